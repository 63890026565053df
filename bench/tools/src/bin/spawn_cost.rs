//! What a spawn costs a process of `replay`'s size, with and without a
//! `pre_exec` hook: with one, std must `fork` (copying the parent's page
//! tables); without, it uses `posix_spawn` (`CLONE_VM | CLONE_VFORK`).
//! `replay` spawns its launcher with a hook (it places the protocol
//! pipes at fixed descriptors), so this bounds what spawning without one
//! would save per command (`bench/PROFILE.md`).
//!
//! `bench/tools/target/release/spawn_cost --exe target/release/replay-sandbox --mib 16`

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{ensure, Context, Result};
use clap::Parser;

/// Times spawn-and-wait of a program, alternating with and without a
/// `pre_exec` hook, from a process holding `--mib` MiB and four threads.
#[derive(Parser)]
#[command(name = "spawn_cost")]
struct Args {
    /// The program to spawn (it is run with no arguments and an empty
    /// environment; its exit status does not matter).
    #[arg(long)]
    exe: std::path::PathBuf,
    /// MiB of memory this process touches first (`replay`'s own peak
    /// RSS in figure 3 is 8 to 11 MiB).
    #[arg(long, default_value_t = 16)]
    mib: usize,
    /// Spawns per measurement.
    #[arg(long, default_value_t = 300)]
    n: u32,
    /// Alternating rounds of both ways.
    #[arg(long, default_value_t = 4)]
    rounds: u32,
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(args.n > 0, "--n must be at least 1");
    let mut held = vec![0u8; args.mib << 20];
    for page in held.chunks_mut(4096) {
        page[0] = 1;
    }
    let _threads: Vec<_> = (0..4)
        .map(|_| std::thread::spawn(std::thread::park))
        .collect();
    println!("mib\thook\tus_per_spawn");
    for _ in 0..args.rounds {
        for hook in [false, true] {
            let started = Instant::now();
            for _ in 0..args.n {
                let mut command = Command::new(&args.exe);
                command
                    .env_clear()
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .process_group(0);
                if hook {
                    // SAFETY: the hook does nothing, so it is trivially
                    // async-signal-safe.
                    unsafe {
                        command.pre_exec(|| Ok(()));
                    }
                }
                let mut child = command
                    .spawn()
                    .with_context(|| format!("cannot spawn {}", args.exe.display()))?;
                child.wait().context("cannot wait for the child")?;
            }
            let per = started.elapsed().as_secs_f64() / f64::from(args.n) * 1e6;
            println!("{}\t{hook}\t{per:.0}", args.mib);
        }
    }
    std::hint::black_box(&held);
    Ok(())
}
