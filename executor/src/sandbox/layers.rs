//! The sandbox's decisions: which layers to apply, in which order, and what
//! a missing layer means ([`Want`] x availability -> applied, skipped or
//! refused). Kernel calls go through the [`Kernel`] seam (youki's `Syscall`
//! pattern) so these rules are unit-tested without a kernel.

use std::io;
use std::path::PathBuf;

use super::protocol::Refusal;
use super::spec::{AppliedLayers, LandlockLayer, Layer, SandboxSpec, Skipped, Want};

/// A resource limit the sandbox sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Limit {
    /// `RLIMIT_CORE`.
    Core,
    /// `RLIMIT_FSIZE`.
    Fsize,
    /// `RLIMIT_NOFILE`.
    Nofile,
}

/// What Landlock is asked to enforce.
#[derive(Debug, Clone, Copy)]
pub(crate) struct LandlockRules<'a> {
    /// Read (and execute, unless `executable` is set) beneath these.
    pub(crate) readable: &'a [PathBuf],
    /// When set, execute only these files.
    pub(crate) executable: Option<&'a [PathBuf]>,
    /// Every right beneath these.
    pub(crate) writable: &'a [PathBuf],
    /// Deny TCP bind and connect as well.
    pub(crate) deny_tcp: bool,
}

/// The outcome of asking the kernel for a Landlock ruleset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LandlockOutcome {
    /// The ruleset is enforced on this process and its future children.
    Enforced(LandlockLayer),
    /// Nothing was enforced, and why (no Landlock in the kernel, an error).
    Unavailable(String),
}

/// Why a user namespace could not be set up.
#[derive(Debug)]
pub(crate) enum UserNamespaceError {
    /// `unshare` failed: nothing changed, the process may run without it.
    Unshare(io::Error),
    /// `unshare` succeeded but the id maps could not be written: the process
    /// is now in a namespace where it has no uid, and cannot leave it.
    Map(io::Error),
}

/// The kernel calls the sandbox child makes, one method per layer.
pub(crate) trait Kernel {
    /// `prctl(PR_SET_PDEATHSIG, SIGKILL)`.
    fn set_parent_death_signal(&mut self) -> io::Result<()>;
    /// `getppid()`.
    fn parent_pid(&self) -> u32;
    /// `setns` into the network namespace the parent passed, if it passed
    /// one (`None`: nothing to join); needs `CAP_SYS_ADMIN`.
    fn join_network(&mut self) -> Option<io::Result<()>>;
    /// `unshare(CLONE_NEWNET)`: needs `CAP_SYS_ADMIN`.
    fn unshare_network(&mut self) -> io::Result<()>;
    /// `unshare(CLONE_NEWUSER | CLONE_NEWNET)`, then map the caller's own
    /// uid and gid (after `setgroups deny`).
    fn unshare_user_and_network(&mut self) -> Result<(), UserNamespaceError>;
    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)`.
    fn set_no_new_privs(&mut self) -> io::Result<()>;
    /// Build and enforce a Landlock ruleset on this process.
    fn restrict_landlock(&mut self, rules: LandlockRules<'_>) -> LandlockOutcome;
    /// Set a resource limit (soft and hard, never above the current hard).
    fn set_rlimit(&mut self, limit: Limit, value: u64) -> io::Result<()>;
}

/// Applies the layers `spec` asks for, in order.
///
/// `expected_parent` is the pid of the process that launched this one: if
/// the parent-death signal is wanted and the parent is already gone (we were
/// reparented before the `prctl`, so the signal will never come), refuse.
pub(crate) fn apply_layers(
    spec: &SandboxSpec,
    kernel: &mut dyn Kernel,
    expected_parent: Option<u32>,
) -> Result<AppliedLayers, Refusal> {
    let mut applied = AppliedLayers::default();

    // The parent-death signal first, so nothing below can outlive `replay`.
    // Race: the parent may die between our fork and this prctl; then the
    // signal never fires, which the getppid() check below catches.
    if spec.parent_death_signal {
        kernel.set_parent_death_signal().map_err(|e| {
            refuse(
                Layer::ParentDeathSignal,
                format!("`prctl(PR_SET_PDEATHSIG)`: {e}"),
            )
        })?;
        if let Some(expected) = expected_parent {
            let actual = kernel.parent_pid();
            if actual != expected {
                return Err(refuse(
                    Layer::ParentDeathSignal,
                    format!("the launching process {expected} exited before the signal was set (parent is now {actual})"),
                ));
            }
        }
        applied.parent_death_signal = true;
    }

    // Namespaces before Landlock: the user-namespace path writes
    // /proc/self/uid_map, which Landlock would then forbid.
    // A namespace the parent made (and keeps for its next tools, each
    // alone in it) is entered if it can be; else one is made here.
    let joined = spec.network != Want::Off
        && spec.join_network
        && matches!(kernel.join_network(), Some(Ok(())));
    if joined {
        applied.network_namespace = true;
    } else if spec.network != Want::Off {
        let outcome = match kernel.unshare_network() {
            Ok(()) => Ok(false),
            Err(direct) => match kernel.unshare_user_and_network() {
                Ok(()) => Ok(true),
                Err(UserNamespaceError::Unshare(user)) => Err(network_reason(&direct, &user)),
                Err(UserNamespaceError::Map(map)) => {
                    // Not a layer we can skip: the tool would run with no uid.
                    return Err(refuse(
                        Layer::Network,
                        format!("entered a user namespace but could not map ids in it: {map}"),
                    ));
                }
            },
        };
        if let Some(user_namespace) = decide(Layer::Network, spec.network, outcome, &mut applied)? {
            applied.network_namespace = true;
            applied.user_namespace = user_namespace;
        }
    }

    // Before Landlock, so Landlock (which needs it unless privileged) finds it set.
    if spec.no_new_privs {
        kernel.set_no_new_privs().map_err(|e| {
            refuse(
                Layer::NoNewPrivs,
                format!("`prctl(PR_SET_NO_NEW_PRIVS)`: {e}"),
            )
        })?;
        applied.no_new_privs = true;
    }

    if spec.landlock != Want::Off {
        let outcome = match kernel.restrict_landlock(LandlockRules {
            readable: &spec.readable,
            executable: spec.executable.as_deref(),
            writable: &spec.writable,
            deny_tcp: spec.network != Want::Off,
        }) {
            LandlockOutcome::Enforced(layer) => Ok(layer),
            LandlockOutcome::Unavailable(reason) => Err(reason),
        };
        applied.landlock = decide(Layer::Landlock, spec.landlock, outcome, &mut applied)?;
    }

    // Last: a low RLIMIT_NOFILE must not stop Landlock from opening its paths.
    let limits = [
        (Limit::Core, Some(spec.rlimits.core)),
        (Limit::Fsize, spec.rlimits.fsize),
        (Limit::Nofile, spec.rlimits.nofile),
    ];
    for (limit, value) in limits {
        if let Some(value) = value {
            kernel.set_rlimit(limit, value).map_err(|e| {
                refuse(
                    Layer::Rlimits,
                    format!("`setrlimit({limit:?}, {value})`: {e}"),
                )
            })?;
        }
    }
    applied.rlimits = true;

    Ok(applied)
}

/// Turns a layer's outcome into applied (`Some`), skipped (`None`, with the
/// reason recorded) or refused, by how much the layer is wanted.
fn decide<T>(
    layer: Layer,
    want: Want,
    outcome: Result<T, String>,
    applied: &mut AppliedLayers,
) -> Result<Option<T>, Refusal> {
    match (outcome, want) {
        (Ok(value), _) => Ok(Some(value)),
        (Err(reason), Want::Required) => Err(refuse(layer, reason)),
        (Err(reason), Want::IfAvailable | Want::Off) => {
            applied.skipped.push(Skipped { layer, reason });
            Ok(None)
        }
    }
}

fn refuse(layer: Layer, reason: String) -> Refusal {
    Refusal { layer, reason }
}

fn network_reason(direct: &io::Error, user: &io::Error) -> String {
    let mut reason = format!(
        "cannot create a network namespace: `unshare(CLONE_NEWNET)`: {direct}; \
         `unshare(CLONE_NEWUSER|CLONE_NEWNET)`: {user}"
    );
    if matches!(
        user.raw_os_error(),
        Some(libc::EPERM | libc::EACCES | libc::ENOSPC)
    ) {
        reason.push_str(" (unprivileged user namespaces are forbidden here, as on GitHub's Ubuntu 24.04 runners)");
    }
    reason
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sandbox::spec::{Enforcement, Rlimits};
    use std::collections::BTreeMap;

    /// A kernel whose every answer is set by the test, recording the calls.
    #[derive(Debug)]
    pub(crate) struct FakeKernel {
        pub(crate) pdeathsig: Result<(), i32>,
        pub(crate) parent: u32,
        /// What joining the parent's namespace does (`None`: none passed).
        pub(crate) join: Option<Result<(), i32>>,
        pub(crate) netns: Result<(), i32>,
        pub(crate) userns: Result<(), i32>,
        pub(crate) userns_map: Result<(), i32>,
        pub(crate) nnp: Result<(), i32>,
        pub(crate) landlock: LandlockOutcome,
        pub(crate) rlimit: Result<(), i32>,
        pub(crate) calls: Vec<String>,
    }

    impl FakeKernel {
        pub(crate) fn capable() -> Self {
            FakeKernel {
                pdeathsig: Ok(()),
                parent: 42,
                join: None,
                netns: Ok(()),
                userns: Ok(()),
                userns_map: Ok(()),
                nnp: Ok(()),
                landlock: LandlockOutcome::Enforced(LandlockLayer {
                    abi: 7,
                    enforcement: Enforcement::Full,
                    tcp_denied: true,
                }),
                rlimit: Ok(()),
                calls: Vec::new(),
            }
        }

        /// A GitHub Ubuntu 24.04 runner: unprivileged, no user namespaces.
        fn github_runner() -> Self {
            FakeKernel {
                netns: Err(libc::EPERM),
                userns: Err(libc::EPERM),
                ..Self::capable()
            }
        }
    }

    fn result(r: Result<(), i32>) -> io::Result<()> {
        r.map_err(io::Error::from_raw_os_error)
    }

    impl Kernel for FakeKernel {
        fn set_parent_death_signal(&mut self) -> io::Result<()> {
            self.calls.push("pdeathsig".into());
            result(self.pdeathsig)
        }
        fn parent_pid(&self) -> u32 {
            self.parent
        }
        fn join_network(&mut self) -> Option<io::Result<()>> {
            self.calls.push("setns".into());
            self.join.map(result)
        }
        fn unshare_network(&mut self) -> io::Result<()> {
            self.calls.push("netns".into());
            result(self.netns)
        }
        fn unshare_user_and_network(&mut self) -> Result<(), UserNamespaceError> {
            self.calls.push("userns".into());
            result(self.userns).map_err(UserNamespaceError::Unshare)?;
            result(self.userns_map).map_err(UserNamespaceError::Map)
        }
        fn set_no_new_privs(&mut self) -> io::Result<()> {
            self.calls.push("nnp".into());
            result(self.nnp)
        }
        fn restrict_landlock(&mut self, rules: LandlockRules<'_>) -> LandlockOutcome {
            self.calls.push(format!("landlock tcp={}", rules.deny_tcp));
            self.landlock.clone()
        }
        fn set_rlimit(&mut self, limit: Limit, value: u64) -> io::Result<()> {
            self.calls.push(format!("{limit:?}={value}"));
            result(self.rlimit)
        }
    }

    fn spec(landlock: Want, network: Want) -> SandboxSpec {
        SandboxSpec {
            landlock,
            network,
            rlimits: Rlimits {
                core: 0,
                fsize: Some(1 << 20),
                nofile: None,
            },
            ..SandboxSpec::new(
                "/bin/true",
                "true",
                vec![],
                BTreeMap::new(),
                "/w",
                "/w".as_ref(),
            )
        }
    }

    #[test]
    fn a_capable_kernel_gets_every_layer_in_order() {
        let mut kernel = FakeKernel::capable();
        let applied = apply_layers(&spec(Want::Required, Want::Required), &mut kernel, Some(42))
            .expect("applies");
        assert!(applied.parent_death_signal && applied.network_namespace && applied.no_new_privs);
        assert!(!applied.user_namespace);
        assert_eq!(applied.landlock.map(|l| l.abi), Some(7));
        assert!(applied.rlimits);
        assert!(applied.skipped.is_empty());
        // Core is always set; nofile was not asked for.
        assert_eq!(
            kernel.calls,
            [
                "pdeathsig",
                "netns",
                "nnp",
                "landlock tcp=true",
                "Core=0",
                "Fsize=1048576"
            ]
        );
    }

    #[test]
    fn unprivileged_falls_back_to_a_user_namespace() {
        let mut kernel = FakeKernel {
            netns: Err(libc::EPERM),
            ..FakeKernel::capable()
        };
        let applied = apply_layers(&spec(Want::Required, Want::Required), &mut kernel, Some(42))
            .expect("applies");
        assert!(applied.network_namespace && applied.user_namespace);
        assert_eq!(kernel.calls[1..3], ["netns", "userns"]);
    }

    // Guards against running a tool with no uid: once in a user namespace
    // whose maps failed, "skip the layer" is no longer an option.
    #[test]
    fn a_user_namespace_without_id_maps_refuses_even_if_only_wanted() {
        let mut kernel = FakeKernel {
            netns: Err(libc::EPERM),
            userns_map: Err(libc::EPERM),
            ..FakeKernel::capable()
        };
        let refusal = apply_layers(&spec(Want::Off, Want::IfAvailable), &mut kernel, None)
            .expect_err("refuses");
        assert_eq!(refusal.layer, Layer::Network);
        assert!(refusal.reason.contains("map ids"), "{}", refusal.reason);
    }

    #[test]
    fn no_namespaces_if_available_is_skipped_with_the_reason() {
        let mut kernel = FakeKernel::github_runner();
        let applied = apply_layers(
            &spec(Want::Required, Want::IfAvailable),
            &mut kernel,
            Some(42),
        )
        .expect("runs weaker, as asked");
        assert!(!applied.network_namespace);
        assert_eq!(applied.skipped.len(), 1);
        assert_eq!(applied.skipped[0].layer, Layer::Network);
        assert!(
            applied.skipped[0].reason.contains("CLONE_NEWUSER")
                && applied.skipped[0].reason.contains("GitHub"),
            "{}",
            applied.skipped[0].reason
        );
        // Landlock still denies TCP even without the namespace.
        assert!(kernel.calls.contains(&"landlock tcp=true".to_string()));
    }

    #[test]
    fn no_namespaces_when_required_refuses_naming_the_layer() {
        let mut kernel = FakeKernel::github_runner();
        let refusal = apply_layers(
            &spec(Want::IfAvailable, Want::Required),
            &mut kernel,
            Some(42),
        )
        .expect_err("refuses");
        assert_eq!(refusal.layer, Layer::Network);
        assert!(
            refusal.reason.contains("Operation not permitted"),
            "{}",
            refusal.reason
        );
        // Nothing after the refused layer was attempted.
        assert!(!kernel.calls.iter().any(|c| c.starts_with("landlock")));
    }

    #[test]
    fn no_landlock_is_skipped_if_available_and_refused_if_required() {
        let missing = || FakeKernel {
            landlock: LandlockOutcome::Unavailable("landlock is not enabled in this kernel".into()),
            ..FakeKernel::capable()
        };
        let applied = apply_layers(&spec(Want::IfAvailable, Want::Off), &mut missing(), None)
            .expect("applies");
        assert_eq!(applied.landlock, None);
        assert_eq!(applied.skipped[0].layer, Layer::Landlock);

        let refusal = apply_layers(&spec(Want::Required, Want::Off), &mut missing(), None)
            .expect_err("refuses");
        assert_eq!(refusal.layer, Layer::Landlock);
        assert!(refusal.reason.contains("not enabled"));
    }

    #[test]
    fn off_layers_are_not_attempted_and_not_reported_as_skipped() {
        let mut kernel = FakeKernel::github_runner();
        let mut off = spec(Want::Off, Want::Off);
        off.no_new_privs = false;
        off.parent_death_signal = false;
        let applied = apply_layers(&off, &mut kernel, Some(1)).expect("applies");
        assert_eq!(applied.skipped, []);
        assert_eq!(kernel.calls, ["Core=0", "Fsize=1048576"]);
        assert!(!applied.no_new_privs && !applied.parent_death_signal);
    }

    #[test]
    fn landlock_denies_tcp_only_when_the_network_is_unwanted() {
        let mut kernel = FakeKernel::capable();
        apply_layers(&spec(Want::Required, Want::Off), &mut kernel, None).expect("applies");
        assert!(kernel.calls.contains(&"landlock tcp=false".to_string()));
    }

    // Guards the pdeathsig race: a parent that died before the prctl would
    // leave the tool running forever, unkillable by `replay`.
    #[test]
    fn a_parent_gone_before_the_death_signal_refuses() {
        let mut kernel = FakeKernel {
            parent: 1,
            ..FakeKernel::capable()
        };
        let refusal =
            apply_layers(&spec(Want::Off, Want::Off), &mut kernel, Some(42)).expect_err("refuses");
        assert_eq!(refusal.layer, Layer::ParentDeathSignal);
        assert_eq!(kernel.calls, ["pdeathsig"]);
    }

    #[test]
    fn failing_rlimits_and_nnp_refuse() {
        let mut kernel = FakeKernel {
            rlimit: Err(libc::EPERM),
            ..FakeKernel::capable()
        };
        let refusal =
            apply_layers(&spec(Want::Off, Want::Off), &mut kernel, None).expect_err("refuses");
        assert_eq!(refusal.layer, Layer::Rlimits);

        let mut kernel = FakeKernel {
            nnp: Err(libc::EINVAL),
            ..FakeKernel::capable()
        };
        let refusal =
            apply_layers(&spec(Want::Off, Want::Off), &mut kernel, None).expect_err("refuses");
        assert_eq!(refusal.layer, Layer::NoNewPrivs);
    }

    #[test]
    fn a_passed_network_namespace_is_joined_instead_of_made() {
        let mut kernel = FakeKernel {
            join: Some(Ok(())),
            ..FakeKernel::capable()
        };
        let joining = SandboxSpec {
            join_network: true,
            ..spec(Want::Required, Want::Required)
        };
        let applied = apply_layers(&joining, &mut kernel, Some(42)).expect("applies");
        assert!(applied.network_namespace && !applied.user_namespace);
        assert!(kernel.calls.contains(&"setns".to_owned()));
        assert!(
            !kernel.calls.contains(&"netns".to_owned()),
            "{:?}",
            kernel.calls
        );
    }

    #[test]
    fn a_namespace_that_cannot_be_joined_is_made_instead_and_none_is_joined_unasked() {
        let mut kernel = FakeKernel {
            join: Some(Err(libc::EINVAL)),
            ..FakeKernel::capable()
        };
        let joining = SandboxSpec {
            join_network: true,
            ..spec(Want::Required, Want::Required)
        };
        let applied = apply_layers(&joining, &mut kernel, Some(42)).expect("applies");
        assert!(applied.network_namespace);
        assert!(
            kernel.calls.contains(&"netns".to_owned()),
            "{:?}",
            kernel.calls
        );

        // Not asked (or the network not cut off): nothing is joined.
        for spec in [
            spec(Want::Required, Want::Required),
            SandboxSpec {
                join_network: true,
                ..spec(Want::Required, Want::Off)
            },
        ] {
            let mut kernel = FakeKernel {
                join: Some(Ok(())),
                ..FakeKernel::capable()
            };
            apply_layers(&spec, &mut kernel, Some(42)).expect("applies");
            assert!(
                !kernel.calls.contains(&"setns".to_owned()),
                "{:?}",
                kernel.calls
            );
        }
    }
}
