//! `naming.wasm`: the example plugin's rules (`replay_plugin_naming`)
//! over plugin ABI v2, streaming. [`stream_main!`] marks the module as v2.

use replay_plugin_kit::{stream_main, Command, Header, Plugin, Verdict};
use replay_plugin_naming::Rules;

/// The plugin: the rules of its config, and nothing kept across commands.
struct Naming {
    rules: Rules,
}

impl Plugin for Naming {
    fn start(header: &Header) -> Result<Self, String> {
        Ok(Naming {
            rules: Rules::from_config(&header.config)?,
        })
    }

    fn judge(&mut self, command: &Command) -> Verdict {
        self.rules.verdict(command)
    }
}

stream_main!(Naming);
