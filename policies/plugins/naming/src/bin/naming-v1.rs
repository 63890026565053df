//! `naming-v1.wasm`: the example plugin's rules (`replay_plugin_naming`)
//! over plugin ABI v1 (the whole log in one request). Built so tests can
//! check that v2 (`naming.wasm`) gives the same verdicts on the same log.

use replay_plugin_kit::try_run;
use replay_plugin_naming::Rules;

fn main() {
    try_run(|request| {
        let rules = Rules::from_config(&request.config)?;
        Ok::<_, String>(request.commands.iter().map(|c| rules.verdict(c)).collect())
    })
}
