//! Splitting one linked module into partitions that compile separately, as
//! LLVM's `SplitModule` and Julia's per-function modules do, with the traps
//! of DESIGN.md ("Partitioning with the LLVM C API") handled.
//!
//! The work happens in three steps:
//!
//! 1. [`tag_locals`], on each input before linking: every local symbol gets a
//!    name derived from its original name and its source module
//!    (`helper.aotc.<hash>`), never from a counter, so names do not shift when
//!    a function is added elsewhere, and linking never has to rename them.
//! 2. [`Partitioner::new`], on the linked module: private constants whose
//!    address does not matter (string literals) are named by their content
//!    and duplicated into every partition that uses them; everything else is
//!    grouped (comdats, aliases with their target, `blockaddress` users with
//!    their function, a local with its only user) and each group goes to
//!    partition `hash(key) mod N`, the key being the group's smallest
//!    non-local name (or smallest name, if all are local). The assignment never looks at
//!    a function's body, so editing a body moves nothing. Locals used across
//!    partitions become hidden external symbols; `linkonce` ones become
//!    `weak` so their owner keeps them.
//! 3. [`Partitioner::build`], once per partition: a copy of the module (read
//!    back from its bitcode, since LLVM 14's `CloneModule` drops ifuncs) in
//!    which what another partition owns becomes a declaration (a fresh
//!    declaration and `replace_all_uses_with` for functions and aliases,
//!    `LLVMSetInitializer(g, NULL)` for variables), special `llvm.*` globals
//!    and module inline assembly stay in partition 0 only, and what is left
//!    unused is removed.

use std::collections::{BTreeSet, HashMap};

use inkwell::llvm_sys::{LLVMUnnamedAddr, LLVMVisibility};
use inkwell::memory_buffer::MemoryBuffer;
use inkwell::module::Module;
use sha2::{Digest, Sha256};

use crate::ir::{self, Linkage, Val};

/// Instructions per partition that `--partitions auto` aims for.
pub const AUTO_INSTRUCTIONS_PER_PARTITION: usize = 256;

/// The most partitions `--partitions auto` chooses.
pub const AUTO_MAX_PARTITIONS: usize = 16;

/// Why a partition could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PartitionError {
    /// A partition failed LLVM's verifier: a bug in `aotc`, reported with
    /// LLVM's message.
    #[error("partition {index} is not valid LLVM IR after splitting: {message}")]
    Invalid {
        /// The partition's index.
        index: usize,
        /// LLVM's verifier output.
        message: String,
    },
    /// The prepared module's bitcode did not read back.
    #[error("partition {index} could not be made from the prepared module: {message}")]
    Reparse {
        /// The partition's index.
        index: usize,
        /// LLVM's message.
        message: String,
    },
    /// A symbol name could not be given to LLVM (it holds a NUL byte).
    #[error("symbol name `{name}` cannot be declared in partition {index}")]
    BadName {
        /// The partition's index.
        index: usize,
        /// The offending name.
        name: String,
    },
}

/// How many partitions `auto` picks for a module of `instructions`
/// instructions: one per [`AUTO_INSTRUCTIONS_PER_PARTITION`], rounded up to a
/// power of two (so small edits rarely change the count), at most
/// [`AUTO_MAX_PARTITIONS`].
pub fn auto_count(instructions: usize) -> usize {
    instructions
        .div_ceil(AUTO_INSTRUCTIONS_PER_PARTITION)
        .max(1)
        .next_power_of_two()
        .min(AUTO_MAX_PARTITIONS)
}

/// The number of instructions in a module's function bodies.
pub fn instruction_count(module: &Module<'_>) -> usize {
    ir::functions(module)
        .into_iter()
        .map(|f| f.instruction_count())
        .sum()
}

/// A short stable tag for a source module: its `source_filename`, its
/// rank among inputs with the same `source_filename`, and a `salt` that
/// tells apart objects meant to be linked together later (empty for a
/// finished executable or library, where the names never escape).
pub fn module_tag(source_filename: &str, rank: usize, salt: &str) -> String {
    let digest = Sha256::digest(format!("{source_filename}\0{rank}\0{salt}").as_bytes());
    hex(&digest[..6])
}

/// Renames every local symbol of an input module (except duplicable
/// constants, which are named by content later) to `<name>.aotc.<tag>`,
/// unnamed ones to `anon.<k>.aotc.<tag>`.
pub fn tag_locals(module: &Module<'_>, tag: &str) {
    let mut anon = 0usize;
    for v in ir::global_values(module) {
        if !v.is_local() || is_special(&v.name()) || is_duplicable(v) {
            continue;
        }
        let name = v.name();
        let new = if name.is_empty() {
            anon += 1;
            format!("anon.{anon}.aotc.{tag}")
        } else {
            format!("{name}.aotc.{tag}")
        };
        v.set_name(&new);
    }
}

/// Whether a global is one of LLVM's special arrays (`llvm.global_ctors`,
/// `llvm.used`, ...), which must be defined exactly once.
fn is_special(name: &str) -> bool {
    name.starts_with("llvm.")
}

/// Whether a global is a local constant whose address does not matter and
/// whose value refers to no other global: it can be copied into each
/// partition that uses it instead of being shared. One that `llvm.used` (or
/// another special array) names is not, since that array lives in one
/// partition only.
fn is_duplicable(v: Val<'_>) -> bool {
    v.is_global_var()
        && v.is_local()
        && v.is_global_constant()
        && !v.is_thread_local()
        && !v.is_externally_initialized()
        && v.unnamed_addr() != LLVMUnnamedAddr::LLVMNoUnnamedAddr
        && v.section().is_none()
        && v.comdat().is_none()
        && v.initializer()
            .is_some_and(|init| !ir::mentions_globals(init))
        && !ir::containing_globals(v)
            .iter()
            .any(|g| is_special(&g.name()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A 64-bit stable hash of a name.
fn stable_hash(name: &str) -> u64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(first)
}

/// The partition plan of a linked module, ready to build partitions from.
///
/// Partitions start from the prepared module's bitcode, parsed again for
/// each one, rather than from `LLVMCloneModule`: LLVM 14's module cloning
/// drops ifuncs and leaves their users pointing into the original module.
pub struct Partitioner<'a, 'ctx> {
    module: &'a Module<'ctx>,
    bitcode: MemoryBuffer<'static>,
    count: usize,
    /// The owning partition of every defined, non-special, non-duplicable
    /// global, by name.
    owner: HashMap<String, usize>,
}

/// What the partitioner decided, for reporting and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Number of partitions.
    pub count: usize,
    /// Symbols given to each partition.
    pub symbols: Vec<usize>,
    /// Local symbols made hidden externals because another partition uses them.
    pub externalized: usize,
}

/// Union-find over node indices.
struct Groups {
    parent: Vec<usize>,
}

impl Groups {
    fn new(n: usize) -> Self {
        Groups {
            parent: (0..n).collect(),
        }
    }

    fn find(&mut self, mut x: usize) -> usize {
        while self.parent[x] != x {
            self.parent[x] = self.parent[self.parent[x]];
            x = self.parent[x];
        }
        x
    }

    /// Joins two groups; the smaller index stays the root, so the result
    /// does not depend on the order of unions.
    fn union(&mut self, a: usize, b: usize) -> bool {
        let (ra, rb) = (self.find(a), self.find(b));
        if ra == rb {
            return false;
        }
        let (lo, hi) = if ra < rb { (ra, rb) } else { (rb, ra) };
        self.parent[hi] = lo;
        true
    }
}

impl<'a, 'ctx> Partitioner<'a, 'ctx> {
    /// Plans `count` partitions of `module`, changing it in place: naming
    /// duplicable constants by content, externalizing locals used across
    /// partitions, and making shared `linkonce` definitions `weak`.
    pub fn new(module: &'a Module<'ctx>, count: usize) -> (Self, Summary) {
        let count = count.max(1);
        if count > 1 {
            name_constants_by_content(module);
        }

        // Nodes: every definition that some partition must own.
        let nodes: Vec<Val<'_>> = ir::global_values(module)
            .into_iter()
            .filter(|v| !v.is_declaration() && !is_special(&v.name()) && !is_duplicable(*v))
            .collect();
        let index: HashMap<Val<'_>, usize> =
            nodes.iter().enumerate().map(|(i, v)| (*v, i)).collect();
        let mut groups = Groups::new(nodes.len());

        // Comdat members stay together.
        let mut comdats: HashMap<usize, usize> = HashMap::new();
        for (i, v) in nodes.iter().enumerate() {
            if v.is_alias() || v.is_ifunc() {
                continue;
            }
            if let Some(c) = v.comdat() {
                let first = *comdats.entry(c).or_insert(i);
                groups.union(first, i);
            }
        }
        // An alias (or ifunc) must be defined where its target is.
        for (i, v) in nodes.iter().enumerate() {
            if let Some(target) = v.aliasee() {
                for g in ir::referenced_globals(target) {
                    if let Some(&j) = index.get(&g) {
                        groups.union(i, j);
                    }
                }
            }
        }
        // A blockaddress stays in the partition that defines its function:
        // whatever holds one goes with the function.
        for (i, v) in nodes.iter().enumerate() {
            if !v.is_function() {
                continue;
            }
            for user in v.users() {
                if user.is_block_address() {
                    for g in ir::containing_globals(user) {
                        if let Some(&j) = index.get(&g) {
                            groups.union(i, j);
                        }
                    }
                }
            }
        }
        // A local used by one group only joins it (a static helper with its
        // caller, a function-local static with its function), so it stays
        // local and optimizable. Repeat until nothing moves.
        let users: Vec<Option<Vec<usize>>> = nodes
            .iter()
            .map(|v| {
                if !v.is_local() {
                    return None;
                }
                let mut out = Vec::new();
                for g in ir::containing_globals(*v) {
                    out.push(*index.get(&g)?);
                }
                Some(out)
            })
            .collect();
        loop {
            let mut changed = false;
            for (i, user_nodes) in users.iter().enumerate() {
                let Some(user_nodes) = user_nodes else {
                    continue;
                };
                let own = groups.find(i);
                let roots: BTreeSet<usize> = user_nodes
                    .iter()
                    .map(|&u| groups.find(u))
                    .filter(|&r| r != own)
                    .collect();
                if roots.len() == 1 {
                    if let Some(&r) = roots.first() {
                        changed |= groups.union(i, r);
                    }
                }
            }
            if !changed {
                break;
            }
        }

        // Each group goes where the hash of its key says: its smallest
        // non-local name (a static that joined its caller's group cannot
        // move the group), or its smallest name if all members are local.
        let mut key: HashMap<usize, (bool, String)> = HashMap::new();
        for (i, v) in nodes.iter().enumerate() {
            let root = groups.find(i);
            let candidate = (v.is_local(), v.name());
            key.entry(root)
                .and_modify(|k| {
                    if candidate < *k {
                        k.clone_from(&candidate)
                    }
                })
                .or_insert(candidate);
        }
        let part: Vec<usize> = (0..nodes.len())
            .map(|i| {
                let root = groups.find(i);
                let k = key
                    .get(&root)
                    .map(|(_, name)| name.as_str())
                    .unwrap_or_default();
                (stable_hash(k) % count as u64) as usize
            })
            .collect();

        // Locals used from another partition become hidden externals (their
        // names already say where they come from); linkonce definitions used
        // from another partition become weak so their owner keeps them.
        let mut externalized = 0;
        if count > 1 {
            for (i, v) in nodes.iter().enumerate() {
                let crosses = ir::containing_globals(*v).into_iter().any(|g| {
                    let where_used = match index.get(&g) {
                        Some(&j) => part[j],
                        None if is_special(&g.name()) => 0,
                        None => part[i],
                    };
                    where_used != part[i]
                });
                if !crosses {
                    continue;
                }
                match v.linkage() {
                    Linkage::LLVMInternalLinkage | Linkage::LLVMPrivateLinkage => {
                        v.set_linkage(Linkage::LLVMExternalLinkage);
                        v.set_visibility(LLVMVisibility::LLVMHiddenVisibility);
                        externalized += 1;
                    }
                    Linkage::LLVMLinkOnceAnyLinkage => v.set_linkage(Linkage::LLVMWeakAnyLinkage),
                    Linkage::LLVMLinkOnceODRLinkage => v.set_linkage(Linkage::LLVMWeakODRLinkage),
                    _ => {}
                }
            }
        }

        let mut symbols = vec![0; count];
        let mut owner = HashMap::new();
        for (i, v) in nodes.iter().enumerate() {
            symbols[part[i]] += 1;
            owner.insert(v.name(), part[i]);
        }
        let summary = Summary {
            count,
            symbols,
            externalized,
        };
        (
            Partitioner {
                module,
                bitcode: module.write_bitcode_to_memory(),
                count,
                owner,
            },
            summary,
        )
    }

    /// The number of partitions.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Builds partition `index` as a new module of the same context.
    pub fn build(&self, index: usize) -> Result<Module<'ctx>, PartitionError> {
        let part = Module::parse_bitcode_from_buffer(&self.bitcode, self.module.get_context())
            .map_err(|e| PartitionError::Reparse {
                index,
                message: e.to_string().trim().to_owned(),
            })?;
        if self.count == 1 {
            return Ok(part);
        }
        let bad_name = |name: String| PartitionError::BadName { index, name };

        for v in ir::global_values(&part) {
            let name = v.name();
            if is_special(&name) {
                // Special arrays are defined in partition 0 only. They are
                // never used by code (an unusual one that is stays, rather
                // than leave a dangling use).
                if index != 0 && v.is_global_var() && !v.has_uses() {
                    // SAFETY: `v` is a global variable with no uses, and it is
                    // not touched after this point.
                    unsafe { v.delete_global() };
                }
                continue;
            }
            let Some(&owner) = self.owner.get(&name) else {
                continue; // a declaration or a duplicable constant
            };
            if owner == index || v.is_local() {
                // Foreign locals are not used here (they would have been
                // externalized); the cleanup below removes them.
                continue;
            }
            if v.is_function() {
                v.set_name("");
                let decl = ir::add_function(&part, &name, v.value_type())
                    .ok_or_else(|| bad_name(name.clone()))?;
                decl.set_call_conv(v.call_conv());
                decl.copy_attributes_from(v, v.param_count());
                decl.set_visibility(v.visibility());
                decl.set_dll_storage(declaration_dll(v));
                v.replace_all_uses_with(decl);
                // SAFETY: `v` has no uses left (all went to `decl`) and is not
                // used after this; LLVM drops its body's references first.
                unsafe { v.delete_function() };
            } else if v.is_global_var() {
                v.clear_initializer();
                v.set_linkage(Linkage::LLVMExternalLinkage);
                v.clear_comdat();
                v.set_dll_storage(declaration_dll(v));
            } else {
                // An alias or ifunc: declare what it names, and leave the old
                // one private and unused for the cleanup to erase (the C API
                // of LLVM 14 cannot delete an alias directly).
                let base = alias_base(v);
                v.set_name("");
                let decl = if v.holds_function() {
                    ir::add_function(&part, &name, v.value_type())
                } else {
                    ir::add_global(&part, &name, v.value_type(), v.address_space())
                }
                .ok_or_else(|| bad_name(name.clone()))?;
                if decl.is_global_var() {
                    if let Some(base) = base.filter(|b| b.is_global_var()) {
                        decl.set_thread_local_mode(base.thread_local_mode());
                    }
                }
                decl.set_visibility(v.visibility());
                decl.set_dll_storage(declaration_dll(v));
                v.replace_all_uses_with(decl);
                v.set_linkage(Linkage::LLVMPrivateLinkage);
            }
        }
        if index != 0 && !ir::module_asm(&part).is_empty() {
            ir::clear_module_asm(&part);
        }

        // Remove what this partition no longer uses: foreign locals, dead
        // aliases, constants of other partitions, unused declarations.
        ir::global_dce(&part);
        remove_unused_declarations(&part);

        part.verify().map_err(|e| PartitionError::Invalid {
            index,
            message: e.to_string().trim().to_owned(),
        })?;
        Ok(part)
    }
}

/// The DLL storage class a declaration of `v` gets: an export stays with
/// the definition.
fn declaration_dll(v: Val<'_>) -> inkwell::llvm_sys::LLVMDLLStorageClass {
    use inkwell::llvm_sys::LLVMDLLStorageClass::{
        LLVMDLLExportStorageClass, LLVMDefaultStorageClass,
    };
    match v.dll_storage() {
        LLVMDLLExportStorageClass => LLVMDefaultStorageClass,
        other => other,
    }
}

/// The global object an alias finally names, if it names one.
fn alias_base(alias: Val<'_>) -> Option<Val<'_>> {
    let mut cur = alias;
    for _ in 0..64 {
        let target = ir::referenced_globals(cur.aliasee()?).into_iter().next()?;
        if target.is_alias() {
            cur = target;
        } else {
            return Some(target);
        }
    }
    None
}

/// Deletes declarations nothing uses, so a partition does not change when
/// an unrelated symbol is added elsewhere.
fn remove_unused_declarations(module: &Module<'_>) {
    for f in ir::functions(module) {
        if f.is_declaration() && !f.has_uses() {
            // SAFETY: an unused declaration has no body and no uses; `f` is
            // not used after this.
            unsafe { f.delete_function() };
        }
    }
    for g in ir::globals(module) {
        if g.is_declaration() && !g.has_uses() {
            // SAFETY: as above, for a global variable.
            unsafe { g.delete_global() };
        }
    }
}

/// Names each duplicable constant after its content, and merges constants
/// with the same content (their addresses do not matter), so that adding a
/// string literal in one function does not rename the others.
fn name_constants_by_content(module: &Module<'_>) {
    let mut seen: HashMap<String, Val<'_>> = HashMap::new();
    for g in ir::globals(module) {
        if !is_duplicable(g) {
            continue;
        }
        let Some(init) = g.initializer() else {
            continue;
        };
        let content = format!(
            "{}|{}|align {}|{:?}|as {}",
            init.type_text(),
            init.text(),
            g.alignment(),
            g.unnamed_addr(),
            g.address_space()
        );
        if let Some(&first) = seen.get(&content) {
            g.replace_all_uses_with(first);
            // SAFETY: `g` has no uses left and is not used after this.
            unsafe { g.delete_global() };
            continue;
        }
        let digest = Sha256::digest(content.as_bytes());
        g.set_name(&format!("__aotc.cst.{}", hex(&digest[..8])));
        g.set_linkage(Linkage::LLVMPrivateLinkage);
        seen.insert(content, g);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_count_grows_in_powers_of_two_and_is_capped() {
        assert_eq!(auto_count(0), 1);
        assert_eq!(auto_count(1), 1);
        assert_eq!(auto_count(AUTO_INSTRUCTIONS_PER_PARTITION), 1);
        assert_eq!(auto_count(AUTO_INSTRUCTIONS_PER_PARTITION + 1), 2);
        assert_eq!(auto_count(3 * AUTO_INSTRUCTIONS_PER_PARTITION), 4);
        assert_eq!(auto_count(usize::MAX / 2), AUTO_MAX_PARTITIONS);
    }

    #[test]
    fn module_tags_differ_by_file_and_rank() {
        assert_ne!(module_tag("a.c", 0, ""), module_tag("b.c", 0, ""));
        assert_ne!(module_tag("a.c", 0, ""), module_tag("a.c", 1, ""));
        assert_eq!(module_tag("a.c", 0, ""), module_tag("a.c", 0, ""));
        assert_eq!(module_tag("a.c", 0, "").len(), 12);
        // Two `--emit obj` outputs from same-named sources link together.
        assert_ne!(module_tag("a.c", 0, "x.o"), module_tag("a.c", 0, "y.o"));
    }

    /// Parses IR text into a module of `context`.
    fn parse<'c>(context: &'c inkwell::context::Context, ir: &str) -> Module<'c> {
        let buffer = MemoryBuffer::create_from_memory_range_copy(ir.as_bytes(), "t.ll");
        context
            .create_module_from_ir(buffer)
            .expect("test IR parses")
    }

    /// Two functions in different partitions share a static: it is defined
    /// once, externalized under `NAME.aotc.TAG` with hidden visibility, and
    /// the other partition declares it.
    #[test]
    fn a_static_shared_across_partitions_is_defined_once_under_a_derived_name() {
        // Two function names that hash to different partitions of 2.
        let names: Vec<String> = (0..16).map(|i| format!("user{i}")).collect();
        let first = &names[0];
        let other = names
            .iter()
            .find(|n| stable_hash(n) % 2 != stable_hash(first) % 2)
            .expect("some name lands in the other partition");
        let ir = format!(
            "source_filename = \"t.c\"\n\
             @shared = internal global i32 7\n\
             define i32 @{first}() {{\n  %v = load i32, i32* @shared\n  ret i32 %v\n}}\n\
             define i32 @{other}() {{\n  %v = load i32, i32* @shared\n  ret i32 %v\n}}\n"
        );
        let context = inkwell::context::Context::create();
        let module = parse(&context, &ir);
        let tag = module_tag("t.c", 0, "");
        tag_locals(&module, &tag);
        let (partitioner, summary) = Partitioner::new(&module, 2);
        assert_eq!(summary.externalized, 1);

        let name = format!("shared.aotc.{tag}");
        let shared = ir::globals(&module)
            .into_iter()
            .find(|g| g.name() == name)
            .expect("the static keeps a name derived from its own and its module's");
        assert_eq!(shared.linkage(), Linkage::LLVMExternalLinkage);
        assert_eq!(shared.visibility(), LLVMVisibility::LLVMHiddenVisibility);

        let mut definitions = 0;
        for i in 0..2 {
            let part = partitioner.build(i).expect("partition builds and verifies");
            let g = ir::globals(&part)
                .into_iter()
                .find(|g| g.name() == name)
                .expect("both partitions use the static");
            definitions += usize::from(!g.is_declaration());
            assert_eq!(
                ir::functions(&part)
                    .iter()
                    .filter(|f| !f.is_declaration())
                    .count(),
                1
            );
        }
        assert_eq!(definitions, 1, "defined in exactly one partition");
    }

    #[test]
    fn groups_keep_the_smallest_root() {
        let mut g = Groups::new(4);
        g.union(3, 1);
        g.union(2, 3);
        assert_eq!(g.find(2), 1);
        assert!(!g.union(1, 2));
    }
}
