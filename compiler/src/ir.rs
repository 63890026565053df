//! A thin, typed facade over the parts of the LLVM C API that inkwell does
//! not expose (use lists, aliases, comdat identity, removing an initializer,
//! block addresses), so that the partitioner reads as logic rather than FFI.
//!
//! The main type is [`Val`], a global value or constant borrowed from a live
//! [`Module`]. Every `unsafe` block here relies on one invariant, stated once:
//! a `Val<'m>` is only made from a value reached through a module borrowed for
//! `'m`, so the value is alive for `'m` unless it is deleted, and deleting is
//! an `unsafe fn` whose caller promises not to use that value again.

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::marker::PhantomData;

use inkwell::llvm_sys::comdat::{LLVMGetComdat, LLVMSetComdat};
use inkwell::llvm_sys::core as c;
use inkwell::llvm_sys::prelude::{LLVMModuleRef, LLVMTypeRef, LLVMValueRef};
use inkwell::llvm_sys::{LLVMLinkage, LLVMTypeKind, LLVMUnnamedAddr, LLVMVisibility};
use inkwell::module::Module;

pub(crate) use inkwell::llvm_sys::LLVMLinkage as Linkage;

/// A value (global, function, alias, constant or instruction) of a module
/// borrowed for `'m`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Val<'m> {
    raw: LLVMValueRef,
    _module: PhantomData<&'m ()>,
}

impl std::fmt::Debug for Val<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Val({:?})", self.name())
    }
}

/// Wraps a non-null raw value reached through a module borrowed for `'m`.
fn wrap<'m>(raw: LLVMValueRef) -> Option<Val<'m>> {
    (!raw.is_null()).then_some(Val {
        raw,
        _module: PhantomData,
    })
}

/// Collects an LLVM `first`/`next` iteration into a vector.
fn collect<'m>(
    first: LLVMValueRef,
    next: unsafe extern "C" fn(LLVMValueRef) -> LLVMValueRef,
) -> Vec<Val<'m>> {
    let mut out = Vec::new();
    let mut cur = first;
    while let Some(v) = wrap(cur) {
        out.push(v);
        // SAFETY: `cur` is a live global of a module borrowed by the caller;
        // the `next` functions passed here only read the module's list.
        cur = unsafe { next(cur) };
    }
    out
}

fn raw_module(module: &Module<'_>) -> LLVMModuleRef {
    module.as_mut_ptr()
}

/// The module's functions, in module order.
pub(crate) fn functions<'m>(module: &'m Module<'_>) -> Vec<Val<'m>> {
    // SAFETY: the module is borrowed and alive for the call.
    let first = unsafe { c::LLVMGetFirstFunction(raw_module(module)) };
    collect(first, c::LLVMGetNextFunction)
}

/// The module's global variables, in module order.
pub(crate) fn globals<'m>(module: &'m Module<'_>) -> Vec<Val<'m>> {
    // SAFETY: the module is borrowed and alive for the call.
    let first = unsafe { c::LLVMGetFirstGlobal(raw_module(module)) };
    collect(first, c::LLVMGetNextGlobal)
}

/// The module's aliases, in module order.
pub(crate) fn aliases<'m>(module: &'m Module<'_>) -> Vec<Val<'m>> {
    // SAFETY: the module is borrowed and alive for the call.
    let first = unsafe { c::LLVMGetFirstGlobalAlias(raw_module(module)) };
    collect(first, c::LLVMGetNextGlobalAlias)
}

/// The module's ifuncs, in module order.
pub(crate) fn ifuncs<'m>(module: &'m Module<'_>) -> Vec<Val<'m>> {
    // SAFETY: the module is borrowed and alive for the call.
    let first = unsafe { c::LLVMGetFirstGlobalIFunc(raw_module(module)) };
    collect(first, c::LLVMGetNextGlobalIFunc)
}

/// Every global value of the module: functions, variables, aliases, ifuncs.
pub(crate) fn global_values<'m>(module: &'m Module<'_>) -> Vec<Val<'m>> {
    let mut all = functions(module);
    all.extend(globals(module));
    all.extend(aliases(module));
    all.extend(ifuncs(module));
    all
}

/// The module-level inline assembly.
pub(crate) fn module_asm(module: &Module<'_>) -> String {
    let mut len = 0;
    // SAFETY: the module is alive; LLVM returns a pointer to `len` bytes it
    // owns, which we copy before returning.
    unsafe {
        let ptr = c::LLVMGetModuleInlineAsm(raw_module(module), &mut len);
        if ptr.is_null() || len == 0 {
            return String::new();
        }
        let bytes = std::slice::from_raw_parts(ptr.cast::<u8>(), len);
        String::from_utf8_lossy(bytes).into_owned()
    }
}

/// Removes the module-level inline assembly.
pub(crate) fn clear_module_asm(module: &Module<'_>) {
    // SAFETY: the module is alive; an empty string of length 0 is valid.
    unsafe { c::LLVMSetModuleInlineAsm2(raw_module(module), c"".as_ptr(), 0) }
}

/// Runs LLVM's global dead-code elimination on the module: unused local
/// and discardable globals, functions and aliases are erased.
pub(crate) fn global_dce(module: &Module<'_>) {
    use inkwell::llvm_sys::transforms::ipo::LLVMAddGlobalDCEPass;
    // SAFETY: the pass manager is created, used on the live module and
    // disposed here; it keeps no reference to the module afterwards.
    unsafe {
        let pm = c::LLVMCreatePassManager();
        LLVMAddGlobalDCEPass(pm);
        c::LLVMRunPassManager(pm, raw_module(module));
        c::LLVMDisposePassManager(pm);
    }
}

/// Adds a function declaration named `name` of function type `ty`.
pub(crate) fn add_function<'m>(
    module: &'m Module<'_>,
    name: &str,
    ty: LLVMTypeRef,
) -> Option<Val<'m>> {
    let name = CString::new(name).ok()?;
    // SAFETY: the module is alive and `ty` is a function type of its context
    // (taken from a global of the same module by the caller).
    wrap(unsafe { c::LLVMAddFunction(raw_module(module), name.as_ptr(), ty) })
}

/// Adds a global variable declaration named `name` of type `ty`.
pub(crate) fn add_global<'m>(
    module: &'m Module<'_>,
    name: &str,
    ty: LLVMTypeRef,
    address_space: u32,
) -> Option<Val<'m>> {
    let name = CString::new(name).ok()?;
    // SAFETY: the module is alive and `ty` is a first-class type of its
    // context (taken from a global of the same module by the caller).
    wrap(unsafe {
        c::LLVMAddGlobalInAddressSpace(raw_module(module), ty, name.as_ptr(), address_space)
    })
}

impl<'m> Val<'m> {
    /// The value's name (empty for unnamed values).
    pub(crate) fn name(self) -> String {
        let mut len = 0;
        // SAFETY: `self` is alive (type invariant); the returned pointer is to
        // `len` bytes owned by LLVM that we copy at once.
        unsafe {
            let ptr = c::LLVMGetValueName2(self.raw, &mut len);
            if ptr.is_null() || len == 0 {
                return String::new();
            }
            String::from_utf8_lossy(std::slice::from_raw_parts(ptr.cast::<u8>(), len)).into_owned()
        }
    }

    /// Renames the value; LLVM adds a suffix if the name is taken.
    pub(crate) fn set_name(self, name: &str) {
        // SAFETY: `self` is alive; the pointer and length describe `name`.
        unsafe { c::LLVMSetValueName2(self.raw, name.as_ptr().cast(), name.len()) }
    }

    /// Whether this is a function.
    pub(crate) fn is_function(self) -> bool {
        // SAFETY: `self` is alive; `LLVMIsA*` only inspect the value's kind.
        unsafe { !c::LLVMIsAFunction(self.raw).is_null() }
    }

    /// Whether this is a global variable.
    pub(crate) fn is_global_var(self) -> bool {
        // SAFETY: as in `is_function`.
        unsafe { !c::LLVMIsAGlobalVariable(self.raw).is_null() }
    }

    /// Whether this is an alias.
    pub(crate) fn is_alias(self) -> bool {
        // SAFETY: as in `is_function`.
        unsafe { !c::LLVMIsAGlobalAlias(self.raw).is_null() }
    }

    /// Whether this is an ifunc.
    pub(crate) fn is_ifunc(self) -> bool {
        // SAFETY: as in `is_function`.
        unsafe { !c::LLVMIsAGlobalIFunc(self.raw).is_null() }
    }

    /// Whether this is any global value.
    pub(crate) fn is_global_value(self) -> bool {
        // SAFETY: as in `is_function`.
        unsafe { !c::LLVMIsAGlobalValue(self.raw).is_null() }
    }

    /// Whether this is a `blockaddress` constant.
    pub(crate) fn is_block_address(self) -> bool {
        // SAFETY: as in `is_function`.
        unsafe { !c::LLVMIsABlockAddress(self.raw).is_null() }
    }

    /// Whether this is an instruction.
    pub(crate) fn is_instruction(self) -> bool {
        // SAFETY: as in `is_function`.
        unsafe { !c::LLVMIsAInstruction(self.raw).is_null() }
    }

    /// Whether this is a constant (including globals).
    pub(crate) fn is_constant(self) -> bool {
        // SAFETY: as in `is_function`.
        unsafe { !c::LLVMIsAConstant(self.raw).is_null() }
    }

    /// Whether this global is a declaration (no body, no initializer).
    pub(crate) fn is_declaration(self) -> bool {
        // SAFETY: `self` is a live global value (callers only ask globals).
        unsafe { c::LLVMIsDeclaration(self.raw) != 0 }
    }

    /// The global's linkage.
    pub(crate) fn linkage(self) -> Linkage {
        // SAFETY: `self` is a live global value.
        unsafe { c::LLVMGetLinkage(self.raw) }
    }

    /// Sets the global's linkage.
    pub(crate) fn set_linkage(self, linkage: Linkage) {
        // SAFETY: `self` is a live global value.
        unsafe { c::LLVMSetLinkage(self.raw, linkage) }
    }

    /// Whether the global has local (internal or private) linkage.
    pub(crate) fn is_local(self) -> bool {
        matches!(
            self.linkage(),
            LLVMLinkage::LLVMInternalLinkage | LLVMLinkage::LLVMPrivateLinkage
        )
    }

    /// The global's visibility.
    pub(crate) fn visibility(self) -> LLVMVisibility {
        // SAFETY: `self` is a live global value.
        unsafe { c::LLVMGetVisibility(self.raw) }
    }

    /// Sets the global's visibility.
    pub(crate) fn set_visibility(self, visibility: LLVMVisibility) {
        // SAFETY: `self` is a live global value.
        unsafe { c::LLVMSetVisibility(self.raw, visibility) }
    }

    /// The global's DLL storage class.
    pub(crate) fn dll_storage(self) -> inkwell::llvm_sys::LLVMDLLStorageClass {
        // SAFETY: `self` is a live global value.
        unsafe { c::LLVMGetDLLStorageClass(self.raw) }
    }

    /// Sets the global's DLL storage class.
    pub(crate) fn set_dll_storage(self, class: inkwell::llvm_sys::LLVMDLLStorageClass) {
        // SAFETY: `self` is a live global value.
        unsafe { c::LLVMSetDLLStorageClass(self.raw, class) }
    }

    /// The global's `unnamed_addr` kind.
    pub(crate) fn unnamed_addr(self) -> LLVMUnnamedAddr {
        // SAFETY: `self` is a live global value.
        unsafe { c::LLVMGetUnnamedAddress(self.raw) }
    }

    /// The global's explicit section, if any.
    pub(crate) fn section(self) -> Option<String> {
        // SAFETY: `self` is a live global value; the string is LLVM's and is
        // copied at once.
        unsafe {
            let ptr = c::LLVMGetSection(self.raw);
            if ptr.is_null() {
                return None;
            }
            let s = CStr::from_ptr(ptr).to_string_lossy().into_owned();
            (!s.is_empty()).then_some(s)
        }
    }

    /// The global's alignment.
    pub(crate) fn alignment(self) -> u32 {
        // SAFETY: `self` is a live global value (or instruction, which LLVM
        // also accepts).
        unsafe { c::LLVMGetAlignment(self.raw) }
    }

    /// The comdat's identity, if the global has one.
    pub(crate) fn comdat(self) -> Option<usize> {
        // SAFETY: `self` is a live global object.
        let comdat = unsafe { LLVMGetComdat(self.raw) };
        (!comdat.is_null()).then_some(comdat as usize)
    }

    /// Takes the global out of its comdat.
    pub(crate) fn clear_comdat(self) {
        // SAFETY: `self` is a live global object; a null comdat means none.
        unsafe { LLVMSetComdat(self.raw, std::ptr::null_mut()) }
    }

    /// Whether this global variable is `constant`.
    pub(crate) fn is_global_constant(self) -> bool {
        debug_assert!(self.is_global_var());
        // SAFETY: `self` is a live global variable (checked by callers).
        unsafe { c::LLVMIsGlobalConstant(self.raw) != 0 }
    }

    /// Whether this global variable is thread-local.
    pub(crate) fn is_thread_local(self) -> bool {
        debug_assert!(self.is_global_var());
        // SAFETY: `self` is a live global variable (checked by callers).
        unsafe { c::LLVMIsThreadLocal(self.raw) != 0 }
    }

    /// This global variable's thread-local mode.
    pub(crate) fn thread_local_mode(self) -> inkwell::llvm_sys::LLVMThreadLocalMode {
        debug_assert!(self.is_global_var());
        // SAFETY: `self` is a live global variable (checked by callers).
        unsafe { c::LLVMGetThreadLocalMode(self.raw) }
    }

    /// Sets this global variable's thread-local mode.
    pub(crate) fn set_thread_local_mode(self, mode: inkwell::llvm_sys::LLVMThreadLocalMode) {
        debug_assert!(self.is_global_var());
        // SAFETY: `self` is a live global variable (checked by callers).
        unsafe { c::LLVMSetThreadLocalMode(self.raw, mode) }
    }

    /// Whether this global variable is `externally_initialized`.
    pub(crate) fn is_externally_initialized(self) -> bool {
        // SAFETY: `self` is a live global variable (checked by callers).
        unsafe { c::LLVMIsExternallyInitialized(self.raw) != 0 }
    }

    /// This global variable's initializer.
    pub(crate) fn initializer(self) -> Option<Val<'m>> {
        debug_assert!(self.is_global_var());
        // SAFETY: `self` is a live global variable; the initializer is a
        // constant of the same module's context.
        wrap(unsafe { c::LLVMGetInitializer(self.raw) })
    }

    /// Removes this global variable's initializer, making it a declaration.
    ///
    /// inkwell has no safe call for this; it is `LLVMSetInitializer(g, NULL)`.
    pub(crate) fn clear_initializer(self) {
        debug_assert!(self.is_global_var());
        // SAFETY: `self` is a live global variable; LLVM documents a null
        // initializer as "no initializer" (`GlobalVariable::setInitializer`
        // drops the operand), which leaves a valid declaration once the
        // caller also sets a declaration-compatible linkage.
        unsafe { c::LLVMSetInitializer(self.raw, std::ptr::null_mut()) }
    }

    /// An alias's or ifunc's target expression.
    pub(crate) fn aliasee(self) -> Option<Val<'m>> {
        // SAFETY: `self` is a live alias or ifunc (checked here).
        unsafe {
            if self.is_alias() {
                wrap(c::LLVMAliasGetAliasee(self.raw))
            } else if self.is_ifunc() {
                wrap(c::LLVMGetGlobalIFuncResolver(self.raw))
            } else {
                None
            }
        }
    }

    /// The type of the value a global holds (a function type for functions).
    pub(crate) fn value_type(self) -> LLVMTypeRef {
        // SAFETY: `self` is a live global value.
        unsafe { c::LLVMGlobalGetValueType(self.raw) }
    }

    /// Whether the global's value type is a function type.
    pub(crate) fn holds_function(self) -> bool {
        // SAFETY: the type is owned by the live module's context.
        unsafe { c::LLVMGetTypeKind(self.value_type()) == LLVMTypeKind::LLVMFunctionTypeKind }
    }

    /// The address space of the global's pointer type.
    pub(crate) fn address_space(self) -> u32 {
        // SAFETY: a global value's type is a pointer type.
        unsafe { c::LLVMGetPointerAddressSpace(c::LLVMTypeOf(self.raw)) }
    }

    /// The printed type of the value.
    pub(crate) fn type_text(self) -> String {
        // SAFETY: `self` is alive; the printed string is owned by us and freed
        // with `LLVMDisposeMessage` after copying.
        unsafe {
            let ptr = c::LLVMPrintTypeToString(c::LLVMTypeOf(self.raw));
            let s = CStr::from_ptr(ptr).to_string_lossy().into_owned();
            c::LLVMDisposeMessage(ptr);
            s
        }
    }

    /// The printed value (LLVM assembly).
    pub(crate) fn text(self) -> String {
        // SAFETY: as in `type_text`.
        unsafe {
            let ptr = c::LLVMPrintValueToString(self.raw);
            let s = CStr::from_ptr(ptr).to_string_lossy().into_owned();
            c::LLVMDisposeMessage(ptr);
            s
        }
    }

    /// The value's operands (for constants: their elements or operands).
    pub(crate) fn operands(self) -> Vec<Val<'m>> {
        // SAFETY: `self` is a live user; indices are below its operand count.
        unsafe {
            let n = c::LLVMGetNumOperands(self.raw);
            (0..n.max(0) as u32)
                .filter_map(|i| wrap(c::LLVMGetOperand(self.raw, i)))
                .collect()
        }
    }

    /// The values that use this one, once per use.
    pub(crate) fn users(self) -> Vec<Val<'m>> {
        let mut out = Vec::new();
        // SAFETY: `self` is alive; the use list is walked without changing it.
        unsafe {
            let mut u = c::LLVMGetFirstUse(self.raw);
            while !u.is_null() {
                if let Some(user) = wrap(c::LLVMGetUser(u)) {
                    out.push(user);
                }
                u = c::LLVMGetNextUse(u);
            }
        }
        out
    }

    /// Whether anything uses this value.
    pub(crate) fn has_uses(self) -> bool {
        // SAFETY: `self` is alive.
        unsafe { !c::LLVMGetFirstUse(self.raw).is_null() }
    }

    /// The function an instruction belongs to.
    pub(crate) fn instruction_function(self) -> Option<Val<'m>> {
        // SAFETY: `self` is a live instruction (checked here); a detached
        // instruction has no block, which we test before asking its parent.
        unsafe {
            if !self.is_instruction() {
                return None;
            }
            let block = c::LLVMGetInstructionParent(self.raw);
            if block.is_null() {
                return None;
            }
            wrap(c::LLVMGetBasicBlockParent(block))
        }
    }

    /// The number of instructions in a function's body.
    pub(crate) fn instruction_count(self) -> usize {
        let mut count = 0;
        // SAFETY: `self` is a live function; blocks and instructions are only
        // read.
        unsafe {
            let mut block = c::LLVMGetFirstBasicBlock(self.raw);
            while !block.is_null() {
                let mut inst = c::LLVMGetFirstInstruction(block);
                while !inst.is_null() {
                    count += 1;
                    inst = c::LLVMGetNextInstruction(inst);
                }
                block = c::LLVMGetNextBasicBlock(block);
            }
        }
        count
    }

    /// A function's calling convention.
    pub(crate) fn call_conv(self) -> u32 {
        // SAFETY: `self` is a live function.
        unsafe { c::LLVMGetFunctionCallConv(self.raw) }
    }

    /// Sets a function's calling convention.
    pub(crate) fn set_call_conv(self, cc: u32) {
        // SAFETY: `self` is a live function.
        unsafe { c::LLVMSetFunctionCallConv(self.raw, cc) }
    }

    /// Copies the function, return and parameter attributes of `from`.
    pub(crate) fn copy_attributes_from(self, from: Val<'m>, params: u32) {
        // Index 0 is the return value, 1.. the parameters, !0 the function.
        let indices = std::iter::once(u32::MAX).chain(0..=params);
        for index in indices {
            // SAFETY: both are live functions of the same context and the same
            // type; `count` entries are written to a buffer of that size, and
            // attributes are context-owned, so sharing them is allowed.
            unsafe {
                let count = c::LLVMGetAttributeCountAtIndex(from.raw, index);
                if count == 0 {
                    continue;
                }
                let mut attrs = vec![std::ptr::null_mut(); count as usize];
                c::LLVMGetAttributesAtIndex(from.raw, index, attrs.as_mut_ptr());
                for attr in attrs {
                    c::LLVMAddAttributeAtIndex(self.raw, index, attr);
                }
            }
        }
    }

    /// The number of parameters of a function.
    pub(crate) fn param_count(self) -> u32 {
        // SAFETY: `self` is a live function.
        unsafe { c::LLVMCountParams(self.raw) }
    }

    /// Replaces every use of `self` with `with` (same type).
    pub(crate) fn replace_all_uses_with(self, with: Val<'m>) {
        // SAFETY: both are live values of the same module with the same type
        // (callers build `with` from `self`'s type).
        unsafe { c::LLVMReplaceAllUsesWith(self.raw, with.raw) }
    }

    /// Deletes a function (definition or declaration) from its module.
    ///
    /// # Safety
    /// `self` must be a function, and neither it nor any value inside its
    /// body may be used afterwards.
    pub(crate) unsafe fn delete_function(self) {
        debug_assert!(self.is_function());
        // SAFETY: upheld by the caller; LLVM drops the body's references
        // (including block addresses, which it replaces) before erasing.
        unsafe { c::LLVMDeleteFunction(self.raw) }
    }

    /// Deletes a global variable from its module.
    ///
    /// # Safety
    /// `self` must be a global variable with no uses, not used afterwards.
    pub(crate) unsafe fn delete_global(self) {
        debug_assert!(self.is_global_var());
        // SAFETY: upheld by the caller.
        unsafe { c::LLVMDeleteGlobal(self.raw) }
    }
}

/// The global values a constant refers to, looking through constant
/// expressions and aggregates (not through other globals' initializers).
pub(crate) fn referenced_globals<'m>(constant: Val<'m>) -> Vec<Val<'m>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![constant];
    while let Some(v) = stack.pop() {
        if !seen.insert(v) {
            continue;
        }
        if v.is_global_value() {
            out.push(v);
            continue;
        }
        if v.is_block_address() {
            // Operand 0 is the function; operand 1 the block, not a constant.
            if let Some(f) = v.operands().first() {
                out.push(*f);
            }
            continue;
        }
        if v.is_constant() {
            stack.extend(v.operands());
        }
    }
    out
}

/// Whether a constant refers to any global value or block address.
pub(crate) fn mentions_globals(constant: Val<'_>) -> bool {
    !referenced_globals(constant).is_empty()
}

/// The globals that contain a use of `value`: the function of an
/// instruction, the variable whose initializer holds it, the alias that
/// names it, found through any number of constants in between.
pub(crate) fn containing_globals<'m>(value: Val<'m>) -> Vec<Val<'m>> {
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = value.users();
    while let Some(user) = stack.pop() {
        if !seen.insert(user) {
            continue;
        }
        if user.is_instruction() {
            if let Some(f) = user.instruction_function() {
                out.push(f);
            }
        } else if user.is_global_value() {
            out.push(user);
        } else {
            stack.extend(user.users());
        }
    }
    out
}
