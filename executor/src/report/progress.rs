//! Progress while tools run: a bar on a terminal, else one plain line per
//! command as it starts.

use std::io::{self, Write};

use crate::event::{Event, Reporter};

/// A progress bar, or one plain line per command.
pub struct ProgressReporter {
    bar: Option<indicatif::ProgressBar>,
    lines: Box<dyn Write + Send>,
    /// What runs now (`-j N` runs several), as `id tool`.
    running: Vec<(u64, String)>,
}

impl ProgressReporter {
    /// A bar for stderr, if stderr is a terminal.
    pub fn terminal_bar() -> Option<indicatif::ProgressBar> {
        use std::io::IsTerminal;
        io::stderr()
            .is_terminal()
            .then(|| styled(indicatif::ProgressBar::new(0)))
    }

    /// Progress shown on `bar`.
    pub fn bar(bar: indicatif::ProgressBar) -> Self {
        ProgressReporter {
            bar: Some(bar),
            lines: Box::new(io::sink()),
            running: Vec::new(),
        }
    }

    /// Plain lines on `out`, never a bar.
    pub fn lines(out: Box<dyn Write + Send>) -> Self {
        ProgressReporter {
            bar: None,
            lines: out,
            running: Vec::new(),
        }
    }
}

impl Reporter for ProgressReporter {
    fn event(&mut self, event: &Event<'_>) -> io::Result<()> {
        match (&self.bar, event) {
            (Some(bar), Event::Validated { commands }) => bar.set_length(*commands),
            (Some(bar), Event::Started { id, tool, .. }) => {
                self.running.push((*id, (*tool).to_owned()));
                bar.set_message(running(&self.running));
            }
            (Some(bar), Event::Finished(record)) => {
                self.running.retain(|(id, _)| *id != record.id);
                bar.set_message(running(&self.running));
                bar.inc(1);
            }
            (Some(bar), Event::Done(_)) => bar.finish_and_clear(),
            (None, Event::Started { id, tool, position }) => {
                writeln!(
                    self.lines,
                    "replay: [{position}] running command {id} ({tool})"
                )?;
            }
            (Some(_), _) | (None, _) => {}
        }
        Ok(())
    }
}

impl Drop for ProgressReporter {
    /// A session that ends early (an error, Ctrl-C before the run's end)
    /// leaves no bar behind on the terminal.
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            if !bar.is_finished() {
                bar.finish_and_clear();
            }
        }
    }
}

/// The bar's look: done of all, the time since the run began and an
/// estimate of what is left, then what runs now.
fn styled(bar: indicatif::ProgressBar) -> indicatif::ProgressBar {
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} {elapsed} (eta {eta}) {wide_msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// `3 opt, 4 llc`: what runs now.
fn running(list: &[(u64, String)]) -> String {
    list.iter()
        .map(|(id, tool)| format!("{id} {tool}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A shared buffer the test reads after the reporter wrote to it.
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn without_a_bar_each_started_command_is_one_line() {
        let out = Arc::new(Mutex::new(Vec::new()));
        let mut progress = ProgressReporter::lines(Box::new(Buffer(Arc::clone(&out))));
        progress.event(&Event::Validated { commands: 2 }).unwrap();
        for (position, id) in [(1, 7), (2, 9)] {
            progress
                .event(&Event::Started {
                    id,
                    tool: "llc",
                    position,
                })
                .unwrap();
        }
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "replay: [1] running command 7 (llc)\nreplay: [2] running command 9 (llc)\n"
        );
    }

    /// A terminal that keeps what is drawn on it.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<String>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            100
        }
        fn move_cursor_up(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            self.0.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_bar_shows_elapsed_time_and_an_estimate() {
        let screen = Screen::default();
        let bar = styled(indicatif::ProgressBar::with_draw_target(
            Some(4),
            indicatif::ProgressDrawTarget::term_like(Box::new(screen.clone())),
        ));
        let mut progress = ProgressReporter::bar(bar.clone());
        progress
            .event(&Event::Started {
                id: 3,
                tool: "opt",
                position: 1,
            })
            .unwrap();
        bar.inc(1);
        bar.force_draw();
        let drawn = screen.0.lock().unwrap().clone();
        assert!(drawn.contains("1/4 0s (eta "), "{drawn:?}");
        assert!(drawn.contains("3 opt"), "{drawn:?}");
    }

    #[test]
    fn a_bar_dropped_before_the_run_ends_is_cleared() {
        // Regression: on Ctrl-C the session ended without `Done`, and the
        // bar stayed drawn under the shell's prompt.
        let bar = indicatif::ProgressBar::hidden();
        let progress = ProgressReporter::bar(bar.clone());
        drop(progress);
        assert!(bar.is_finished());
    }

    #[test]
    fn the_bar_names_every_command_running() {
        assert_eq!(
            running(&[(3, "opt".into()), (4, "llc".into())]),
            "3 opt, 4 llc"
        );
        assert_eq!(running(&[]), "");
    }
}
