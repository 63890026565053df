//! `test-farm`: the throwaway build farm of the end-to-end tests
//! (PostgreSQL and BuildGrid, [`replay_e2e::farm::Farm`]) for the bench's
//! remote execution figure. Prints `grpc://127.0.0.1:PORT` on a line of
//! its own once the server accepts connections, then serves until its
//! stdin closes (or says anything), and stops everything it started.

use std::io::{Read as _, Write as _};

fn main() {
    let farm = replay_e2e::farm::Farm::start();
    let mut stdout = std::io::stdout();
    if writeln!(stdout, "{}", farm.url())
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return;
    }
    let mut byte = [0u8; 1];
    // EOF, a byte or an error: each means stop.
    let _ = std::io::stdin().read(&mut byte);
    drop(farm);
}
