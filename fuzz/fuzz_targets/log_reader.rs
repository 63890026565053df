//! The command-log reader on any bytes: it must return a log or an error,
//! never panic, and hold no more than its limits allow (libFuzzer's
//! `-rss_limit_mb` catches a reader that does).
#![no_main]

use std::ops::ControlFlow;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Small limits, so that the fuzzer reaches every one of them.
    let limits = cmdlog::Limits {
        max_log_bytes: 64 << 10,
        max_command_bytes: 8 << 10,
        max_commands: 64,
        max_args: 32,
        max_arg_bytes: 256,
    };
    let mut commands = 0u64;
    let streamed =
        cmdlog::LogReader::new(data)
            .with_limits(limits)
            .read(&mut |command: cmdlog::Command| {
                commands += 1;
                // Every command the reader hands over obeys the limits.
                assert!(command.args.len() as u64 <= limits.max_args);
                assert!(command
                    .args
                    .iter()
                    .all(|a| a.len() as u64 <= limits.max_arg_bytes && !a.contains('\0')));
                ControlFlow::Continue(())
            });
    let whole = cmdlog::read_document(data, limits);
    // Streaming and whole-document reading agree on what is a log.
    assert_eq!(streamed.is_ok(), whole.is_ok(), "{streamed:?} vs {whole:?}");
    if let Ok(summary) = streamed {
        let _ = summary;
        assert!(commands <= limits.max_commands);
    }
});
