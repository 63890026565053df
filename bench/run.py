#!/usr/bin/env python3
"""Runs every benchmark figure of replay and rewrites bench/RESULTS.md and
bench/results.json (and the scale plot bench/scale.svg).

Called by bench/run.sh, which installs, builds and sets up the workloads
first; see the README's "Benchmarks" section. Not a test: nothing here is
asserted, every figure is measured and written down, including the ones
that miss a target.

  python3 bench/run.py [--runs 5] [--quick] [--only pipeline,overhead,...,cache,parallel]

Every figure is a comparison made in the same run: each side is run
`--runs` times, interleaved (A, B, A, B, ...), and reported as the median
with min and max. Pipeline memory is measured by `treepeak`
(bench/tools), an independent sampler that walks the whole process tree
under /proc every millisecond, and cross-checked with `/usr/bin/time -v`.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
WORK = BENCH / "work"
# The binaries measured: BENCH_BIN overrides (e.g. target/debug, to try a
# figure out: such numbers are not the release build's figures); else the
# release build, under CARGO_TARGET_DIR when it is set.
BIN = Path(os.environ.get("BENCH_BIN") or Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target") / "release")
TOOLS = BENCH / "tools" / "target" / "release"
LINUX_POLICY = REPO / "policies" / "linux.toml"
CC_POLICY = REPO / "policies" / "linux-cc.toml"
NAMING_POLICY = REPO / "policies" / "linux-naming.toml"
MIB = 1024 * 1024
FIGURES = ["pipeline", "overhead", "check", "accuracy", "scale", "footprint", "cache", "parallel", "realbuild", "remote",
           "remote_exec"]
# The compiler's own process name and the tools' (as /proc/PID/comm shows them).
COMPILER_COMM = "aotc"
TOOL_COMMS = ("opt", "llc", "clang", "clang-14", "ld", "ld.bfd", "collect2", "cc1")


# --------------------------------------------------------------------------
# running and measuring


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(cmd: list, *, cwd: Path | None = None, env: dict | None = None, quiet: bool = True) -> None:
    """Runs cmd; a failure stops the bench with the command and its output."""
    result = subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE if quiet else None,
        stderr=subprocess.STDOUT if quiet else None,
        text=True,
    )
    if result.returncode != 0:
        output = (result.stdout or "")[-4000:]
        sys.exit(f"bench: `{' '.join(map(str, cmd))}` exited {result.returncode}\n{output}")


def parse_time_v(path: Path) -> dict:
    """The fields of a `/usr/bin/time -v` report that the figures use."""
    fields = {}
    for line in path.read_text().splitlines():
        key, _, value = line.strip().rpartition(": ")
        fields[key] = value
    wall = fields["Elapsed (wall clock) time (h:mm:ss or m:ss)"]
    seconds = 0.0
    for part in wall.split(":"):
        seconds = seconds * 60 + float(part)
    return {
        "wall_s": seconds,
        "user_s": float(fields["User time (seconds)"]),
        "system_s": float(fields["System time (seconds)"]),
        "max_rss": int(fields["Maximum resident set size (kbytes)"]) * 1024,
        "exit_status": int(fields["Exit status"]),
    }


def measured(cmd: list, tag: Path, *, sample: bool = True, env: dict | None = None,
             ok_codes: tuple = (0,)) -> dict:
    """Runs cmd under /usr/bin/time -v (and treepeak, if sample) and returns
    both reports; cmd's output goes to tag.out. An exit code outside
    ok_codes stops the bench."""
    time_file = tag.with_suffix(".time")
    peak_file = tag.with_suffix(".peak.json")
    full = ["/usr/bin/time", "-v", "-o", time_file]
    if sample:
        full += [TOOLS / "treepeak", "--json", peak_file, "--"]
    full += cmd
    with open(tag.with_suffix(".out"), "w") as out:
        start = time.perf_counter()
        code = subprocess.run([str(c) for c in full], stdout=out, stderr=subprocess.STDOUT, env=env).returncode
        wall = time.perf_counter() - start
    if code not in ok_codes:
        sys.exit(f"bench: `{' '.join(map(str, cmd))}` exited {code}; its output is in {tag.with_suffix('.out')}")
    result = {"time": parse_time_v(time_file), "exit": code}
    # time -v prints wall time in centiseconds; this clock is finer (and
    # includes the few ms of starting time itself, the same on every side).
    result["time"]["wall_s"] = wall
    if sample:
        result["treepeak"] = json.loads(peak_file.read_text())
    return result


def summary(values: list) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def cell(stats: dict, unit: str = "", scale: float = 1.0, digits: int = 1) -> str:
    """`median (min–max) unit` for a table cell."""
    if stats["median"] is None:
        return "n/a"
    f = f"{{:.{digits}f}}"
    med, lo, hi = (f.format(stats[k] / scale) for k in ("median", "min", "max"))
    return f"{med} {unit} ({lo}–{hi})".replace("  ", " ")


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def pristine_log(w: Workload, out: Path) -> tuple[Path, Path]:
    """aotc's `--partitions auto` log for w in out/root, and a copy of that
    root as aotc left it (out/pristine), to restore before each run."""
    root = fresh(out / "root")
    run([BIN / "aotc", "--log", root / "log.json", *w.aotc_args(root, "auto")])
    pristine = out / "pristine"
    shutil.rmtree(pristine, ignore_errors=True)
    shutil.copytree(root, pristine)
    return root, pristine


def largest_tool(by_comm: dict) -> tuple[str, int]:
    tools = {k: v for k, v in by_comm.items() if k in TOOL_COMMS}
    if not tools:
        return ("none", 0)
    name = max(tools, key=tools.get)
    return (name, tools[name])


# --------------------------------------------------------------------------
# workloads


class Workload:
    """A program for aotc: bitcode inputs, link flags, and a check that the
    program it built works."""

    def __init__(self, name: str, inputs: list, link: list, verify: list):
        self.name, self.inputs, self.link, self.verify_cmd = name, inputs, link, verify

    def aotc_args(self, root: Path, partitions: str) -> list:
        return [*self.inputs, "-o", root / "prog", "--partitions", partitions, *self.link]

    def verify(self, root: Path) -> None:
        run([*self.verify_cmd, root / "prog"])


def sqlite_workload() -> Workload:
    run(["bash", BENCH / "workloads" / "sqlite.sh"])
    d = WORK / "sqlite"
    return Workload(
        "SQLite 3 amalgamation + demo",
        [d / "sqlite3.bc", d / "demo.bc"],
        ["-l", "m"],
        ["bash", BENCH / "workloads" / "sqlite.sh", "verify"],
    )


def synth_workload(n: int) -> Workload:
    run(["bash", BENCH / "workloads" / "synth.sh", n])
    d = WORK / "synth" / str(n)
    return Workload(f"synthetic, {n} functions", [d / "synth.bc"], [], ["bash", BENCH / "workloads" / "synth.sh", "verify", n])


def write_sh_script(log_path: Path, root: Path, script: Path, *, timed_dir: Path | None = None) -> int:
    """Writes a `sh -e` script that runs the log's commands directly, as
    `aotc --exec` would (its environment plus the command's, in the
    command's cwd); with timed_dir, each under `/usr/bin/time -f %M`.
    Returns the number of commands."""
    doc = json.loads(log_path.read_text())
    lines = ["set -e"]
    for c in doc["commands"]:
        argv = " ".join(sh_quote(a) for a in [resolve_program(c["program"]), *c["args"]])
        env = " ".join(f"{k}={sh_quote(v)}" for k, v in c["env"].items())
        timer = f"/usr/bin/time -f %M -o {sh_quote(str(timed_dir / str(c['id'])))} " if timed_dir else ""
        lines.append(f"cd {sh_quote(str(root / c['cwd']))} && {env + ' ' if env else ''}{timer}{argv}")
    script.write_text("\n".join(lines) + "\n")
    return len(doc["commands"])


def resolve_program(program: str) -> str:
    if os.path.isabs(program):
        return program
    for d in ("/usr/lib/llvm-14/bin", str(BIN), "/usr/bin", "/bin"):
        if os.access(os.path.join(d, program), os.X_OK):
            return os.path.join(d, program)
    return program


def sh_quote(text: str) -> str:
    return "'" + text.replace("'", "'\\''") + "'"


# --------------------------------------------------------------------------
# figures


def fig_pipeline(w: Workload, runs: int, out: Path) -> dict:
    """Figures 1 and 2: `replay drive -- aotc` against `aotc --exec`, and
    partitions 1 against auto (both in driver mode), interleaved."""
    configs = [("drive", "auto"), ("exec", "auto"), ("drive", "1")]
    raw: dict = {f"{m}/{p}": [] for m, p in configs}
    for i in range(runs):
        for mode, parts in configs:
            key = f"{mode}/{parts}"
            log(f"pipeline {w.name}: {key}, run {i + 1}/{runs}")
            root = fresh(out / f"{mode}-{parts}")
            tag = out / f"{mode}-{parts}.{i}"
            if mode == "drive":
                cmd = [BIN / "replay", "drive", "--no-cache", "--policy", LINUX_POLICY, "--root", root,
                       "--report", out / f"{mode}-{parts}.{i}.report.json", "--",
                       BIN / "aotc", *w.aotc_args(root, parts)]
            else:
                cmd = [BIN / "aotc", "--exec", "--log", root / "log.json", *w.aotc_args(root, parts)]
            m = measured(cmd, tag)
            w.verify(root)
            peak = m["treepeak"]
            entry = {
                "wall_s": peak["wall_s"],
                "cpu_s": m["time"]["user_s"] + m["time"]["system_s"],
                "peak_tree_rss": peak["peak_tree_rss"],
                "peak_process_rss": peak["peak_process_rss"],
                "time_v_max_rss": m["time"]["max_rss"],
                "compiler_peak": peak["by_comm"].get(COMPILER_COMM, 0),
                "largest_tool": largest_tool(peak["by_comm"]),
                "mean_sample_us": peak["mean_sample_us"],
                "at_peak": peak["at_peak"],
            }
            if mode == "drive":
                report = json.loads((out / f"{mode}-{parts}.{i}.report.json").read_text())
                entry["replay_producer_peak"] = report["producer"]["peak_rss"]
                entry["replay_tool_peak"] = report["totals"]["peak_rss"]
                entry["replay_tools_cpu_s"] = report["totals"]["cpu_ms"] / 1000
                entry["replay_own_peak"] = report["totals"]["replay_peak_rss"]
                entry["commands"] = report["totals"]["commands"]
                # A tool step can be several processes (clang runs ld): its
                # tree, as replay's sampler saw it.
                entry["tool_step_tree_peak"] = max(
                    (c["outcome"]["measurements"]["peak_tree_rss_sampled"] for c in report["commands"]
                     if c.get("outcome") and c["outcome"].get("measurements")), default=0)
            else:
                # What the tools held at the baseline's peak, besides aotc.
                entry["tools_at_exec_peak"] = sum(p["rss"] for p in peak["at_peak"] if p["comm"] != COMPILER_COMM)
            raw[key].append(entry)
    s = {k: {f: summary([r[f] for r in v]) for f in
             ("wall_s", "cpu_s", "peak_tree_rss", "peak_process_rss", "time_v_max_rss", "compiler_peak")}
         for k, v in raw.items()}
    for k, v in raw.items():
        s[k]["largest_tool_peak"] = summary([r["largest_tool"][1] for r in v])
        s[k]["largest_tool"] = v[0]["largest_tool"][0]
        if k.startswith("drive"):
            for f in ("replay_producer_peak", "replay_tool_peak", "replay_tools_cpu_s", "replay_own_peak", "commands",
                      "tool_step_tree_peak"):
                s[k][f] = summary([r[f] for r in v])
        else:
            s[k]["tools_at_exec_peak"] = summary([r["tools_at_exec_peak"] for r in v])
    # The ideal ratio, from the compiler's own peak and the largest tool
    # step's (all its processes) in the same runs: max(C, T) / (C + T).
    c = s["drive/auto"]["compiler_peak"]["median"]
    t = s["drive/auto"]["tool_step_tree_peak"]["median"]
    ratios = [d["peak_tree_rss"] / e["peak_tree_rss"] for d, e in zip(raw["drive/auto"], raw["exec/auto"])]
    s["ratio_drive_over_exec"] = summary(ratios)
    s["ideal_ratio"] = max(c, t) / (c + t) if c and t else None
    return {"workload": w.name, "runs": raw, "summary": s}


def fig_overhead_log(w: Workload, runs: int, out: Path) -> dict:
    """Figure 3 (real) and 6: `replay --policy` against `sh -e` on the log
    aotc writes for w, and replay's per-command peaks against time -v's."""
    root, keep = pristine_log(w, out)
    n = write_sh_script(root / "log.json", root, out / "plain.sh")
    write_sh_script(root / "log.json", root, out / "timed.sh", timed_dir=out / "timed")
    raw: dict = {"replay": [], "sh": [], "timed": []}
    reports = []
    for i in range(runs):
        for side in ("replay", "sh", "timed"):
            log(f"overhead {w.name}: {side}, run {i + 1}/{runs}")
            # Start every run from the bitcode aotc wrote, nothing else.
            shutil.rmtree(root)
            shutil.copytree(keep, root)
            if side == "replay":
                report = out / f"replay.{i}.report.json"
                m = measured([BIN / "replay", "--no-cache", "--policy", LINUX_POLICY, "--report", report, root / "log.json"],
                             out / f"replay.{i}", sample=False)
                reports.append(json.loads(report.read_text()))
            elif side == "sh":
                m = measured(["sh", "-e", out / "plain.sh"], out / f"sh.{i}", sample=False)
            else:
                fresh(out / "timed")
                m = measured(["sh", "-e", out / "timed.sh"], out / f"timed.{i}", sample=False)
                raw["timed_rss"] = raw.get("timed_rss", []) + [
                    {p.name: int(p.read_text().split()[-1]) * 1024 for p in (out / "timed").iterdir()}]
            w.verify(root)
            raw[side].append(m["time"]["wall_s"])
    ratio = [r / s for r, s in zip(raw["replay"], raw["sh"])]
    # Figure 6: per command, replay's exact peak (VmHWM) and time -v's.
    accuracy = []
    for record in reports[0]["commands"]:
        cid = str(record["id"])
        ours = [next(c for c in rep["commands"] if c["id"] == record["id"])["outcome"]["measurements"]
                for rep in reports]
        accuracy.append({
            "id": record["id"],
            "tool": record["tool"],
            "replay_peak": summary([o["peak_process"]["bytes"] if o.get("peak_process") else None for o in ours]),
            "replay_tree_sampled": summary([o["peak_tree_rss_sampled"] for o in ours]),
            "time_v": summary([t[cid] for t in raw["timed_rss"]]),
        })
    return {
        "workload": w.name, "commands": n, "raw": raw,
        "replay_wall_s": summary(raw["replay"]), "sh_wall_s": summary(raw["sh"]),
        "ratio": summary(ratio),
        "replay_own_peak": summary([r["totals"]["replay_peak_rss"] for r in reports]),
        "accuracy": accuracy,
    }


MEMTOUCH_POLICY = """[policy]
name = "bench-small-commands"
os = "linux"
[tool.memtouch]
programs = ["memtouch"]
dirs = ["{bin}"]
args = "memtouch"
[args.memtouch]
positional = "refuse"
flags = [{{ name = "--mib=", form = "joined", range = [0, 0] }},
         {{ name = "--out=", form = "joined", path = "output" }}]
"""


def fig_footprint(sizes: list, out: Path) -> dict:
    """replay's own peak RSS (its VmHWM, from the report) while it runs N
    trivial commands that each write one declared output: the whole-log
    state grows with the outputs, the reader does not. One run per size:
    a memory figure, and 100,000 real execs take a quarter of an hour."""
    rows = []
    for n in sizes:
        root = fresh(out / str(n))
        (root / "o").mkdir()
        policy = root / "policy.toml"
        policy.write_text(MEMTOUCH_POLICY.format(bin=BIN))
        with open(root / "log.json", "w") as f:
            subprocess.run([sys.executable, BENCH / "genlog.py", str(n), "memtouch-out"], stdout=f, check=True)
        log(f"footprint: {n} commands")
        report = root / "report.json"
        m = measured([BIN / "replay", "--no-cache", "--policy", policy, "--report", report, root / "log.json"],
                     out / f"replay.{n}", sample=False)
        totals = json.loads(report.read_text())["totals"]
        rows.append({"commands": n, "wall_s": m["time"]["wall_s"], "replay_peak_rss": totals["replay_peak_rss"],
                     "time_v_max_rss": m["time"]["max_rss"]})
        shutil.rmtree(root)
    return {"rows": rows}


ONE_FUNCTION_LL = """define i32 @f(i32 %x) {
  %y = add i32 %x, 1
  ret i32 %y
}
"""


def fig_overhead_small(n: int, runs: int, out: Path, kind: str = "memtouch") -> dict:
    """Figure 3 (many small commands): n trivial commands (`memtouch
    --mib=0`, or with kind "opt-O0" `opt -O0` on a one-function module,
    each writing its own output) through replay and through sh -e; also
    replay's own peak."""
    fresh(out)
    if kind == "opt-O0":
        policy = REPO / "policies" / "linux.toml"
        (out / "one.ll").write_text(ONE_FUNCTION_LL)
        (out / "o").mkdir()
    else:
        policy = out / "policy.toml"
        policy.write_text(MEMTOUCH_POLICY.format(bin=BIN))
    with open(out / "log.json", "w") as f:
        subprocess.run([sys.executable, BENCH / "genlog.py", str(n), kind], stdout=f, check=True)
    write_sh_script(out / "log.json", out, out / "plain.sh")
    raw: dict = {"replay": [], "sh": [], "replay_own_peak": []}
    for i in range(runs):
        log(f"overhead: {n} small commands ({kind}), run {i + 1}/{runs}")
        report = out / f"replay.{i}.report.json"
        m = measured([BIN / "replay", "--no-cache", "--policy", policy, "--report", report, out / "log.json"],
                     out / f"replay.{i}", sample=False)
        raw["replay"].append(m["time"]["wall_s"])
        raw["replay_own_peak"].append(json.loads(report.read_text())["totals"]["replay_peak_rss"])
        (out / "log.json.journal").unlink(missing_ok=True)
        raw["sh"].append(measured(["sh", "-e", out / "plain.sh"], out / f"sh.{i}", sample=False)["time"]["wall_s"])
    result = {
        "commands": n, "raw": raw,
        "replay_wall_s": summary(raw["replay"]), "sh_wall_s": summary(raw["sh"]),
        "ratio": summary([r / s for r, s in zip(raw["replay"], raw["sh"])]),
        "replay_own_peak": summary(raw["replay_own_peak"]),
    }
    if kind == "opt-O0":
        result["workload"] = "`opt -O0` on a one-function module"
    return result


def fig_check(sizes: list, runs: int, out: Path, rules_only: list = ()) -> dict:
    """Figures 4 and 5: `replay check` on generated logs, with the TOML
    rules alone and with the naming plugin (cold cache, cached); the sizes
    of `rules_only` with the rules alone, once (a memory figure: a
    10,000,000-command log is 2 GB)."""
    fresh(out)
    rows = []
    for n in [*sizes, *rules_only]:
        logf = out / f"{n}.json"
        with open(logf, "w") as f:
            subprocess.run([sys.executable, BENCH / "genlog.py", str(n), "opt"], stdout=f, check=True)
        cases = ("rules",) if n in rules_only else ("rules", "plugin_cold", "plugin_cached")
        raw: dict = {case: [] for case in cases}
        cache = out / "cache"
        for i in range(1 if n in rules_only else runs):
            log(f"check: {n} commands, run {i + 1}/{runs}")
            for case in raw:
                if case == "plugin_cold":
                    shutil.rmtree(cache, ignore_errors=True)
                policy = LINUX_POLICY if case == "rules" else NAMING_POLICY
                env = dict(os.environ, XDG_CACHE_HOME=str(cache))
                # With the plugin, exit 3 is a result, not a bench failure:
                # a plugin over one of its budgets refuses the log (fail closed).
                m = measured([BIN / "replay", "check", "--policy", policy, logf], out / f"{case}.{n}.{i}",
                             sample=False, env=env, ok_codes=(0,) if case == "rules" else (0, 3))
                entry = dict(m["time"])
                if m["exit"] != 0:
                    # measured() writes `tag.with_suffix(".out")`.
                    text = (out / f"{case}.{n}.{i}").with_suffix(".out").read_text(errors="replace")
                    entry["refused"] = next((line for line in text.splitlines() if "plugin.failed" in line),
                                            "refused")
                raw[case].append(entry)
        rows.append({
            "commands": n, "log_bytes": logf.stat().st_size,
            **{case: {"wall_s": summary([t["wall_s"] for t in v]), "max_rss": summary([t["max_rss"] for t in v]),
                      "refused": next((t["refused"] for t in v if "refused" in t), None)}
               for case, v in raw.items()},
        })
        logf.unlink()
    return {"rows": rows}


def fig_scale(sizes: list, runs: int, out: Path, large_runs: int) -> dict:
    """Figure 7: aotc --log, replay check and replay on the synthetic
    workload at each size (N >= 50,000: `large_runs` runs, for time)."""
    rows = []
    for n in sizes:
        w = synth_workload(n)
        raw: dict = {"aotc": [], "check": [], "replay": [], "replay_own_peak": [], "largest_tool": [], "commands": []}
        for i in range(runs if n < 50_000 else min(runs, large_runs)):
            log(f"scale: N={n}, run {i + 1}/{runs}")
            root = fresh(out / str(n))
            raw["aotc"].append(measured([BIN / "aotc", "--log", root / "log.json", *w.aotc_args(root, "auto")],
                                        out / f"aotc.{n}.{i}", sample=False)["time"])
            raw["check"].append(measured([BIN / "replay", "check", "--policy", LINUX_POLICY, root / "log.json"],
                                         out / f"check.{n}.{i}", sample=False)["time"])
            report = out / f"replay.{n}.{i}.report.json"
            raw["replay"].append(measured([BIN / "replay", "--no-cache", "--policy", LINUX_POLICY, "--report", report,
                                           root / "log.json"], out / f"replay.{n}.{i}", sample=False)["time"])
            totals = json.loads(report.read_text())["totals"]
            raw["replay_own_peak"].append(totals["replay_peak_rss"])
            raw["largest_tool"].append(totals["peak_rss"])
            raw["commands"].append(totals["commands"])
            w.verify(root)
        rows.append({
            "n": n, "raw": raw,
            **{k: {"wall_s": summary([t["wall_s"] for t in raw[k]]), "max_rss": summary([t["max_rss"] for t in raw[k]])}
               for k in ("aotc", "check", "replay")},
            "replay_own_peak": summary(raw["replay_own_peak"]),
            "largest_tool": summary(raw["largest_tool"]),
            "commands": raw["commands"][0],
        })
    return {"rows": rows}


def sqlite_edit() -> list:
    """SQLite's inputs with the cache figure's one-function edit
    (`sqlite.sh edit`: sqlite3_libversion_number() returns one more)."""
    run(["bash", BENCH / "workloads" / "sqlite.sh", "edit"])
    d = WORK / "sqlite"
    return [d / "edit" / "sqlite3.bc", d / "demo.bc"]


def libversion(prog: Path) -> int | None:
    """What sqlite3_libversion_number() returns in prog, read from its
    machine code (`mov $IMM, %eax`): the cache figure checks that the edit
    is in the program built from the edited source, and only there."""
    text = subprocess.run(["/usr/lib/llvm-14/bin/llvm-objdump", "-d", "--no-show-raw-insn",
                           "--disassemble-symbols=sqlite3_libversion_number", str(prog)],
                          capture_output=True, text=True).stdout
    for line in text.splitlines():
        if "mov" in line and "%eax" in line and "$" in line:
            return int(line.split("$", 1)[1].split(",", 1)[0], 0)
    return None


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def sched_split(cmd: list) -> dict:
    """Runs cmd (one process, no children: an all-hits rerun) and splits
    its wall time with the kernel's /proc/PID/schedstat, read every
    millisecond until it exits: on a CPU, runnable but waiting for one
    (other work on the machine), and the rest (asleep: the disk, mostly)."""
    start = time.perf_counter()
    child = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    stat = ["0", "0"]
    while child.poll() is None:
        try:
            stat = Path(f"/proc/{child.pid}/schedstat").read_text().split()
        except OSError:
            pass
        time.sleep(0.001)
    wall = time.perf_counter() - start
    if child.returncode != 0:
        sys.exit(f"bench: `{' '.join(map(str, cmd))}` exited {child.returncode}")
    cpu, waiting = int(stat[0]) / 1e9, int(stat[1]) / 1e9
    return {"wall_s": wall, "cpu_s": cpu, "runqueue_s": waiting, "other_s": max(wall - cpu - waiting, 0.0)}


def hit_breakdown(root: Path, pristine: Path, cache: Path, runs: int, out: Path) -> dict:
    """Where an all-hits rerun's time goes, from outside replay: the check
    pass alone (`replay check`), the files of the cache entries' read sets
    (hashed once per replay process: the digest memo is in memory only)
    and how long sha256 takes over them here (Python's hashlib, warm page
    cache), the rerun's wall split by the scheduler, and, where installed, one rerun's syscalls by wall time
    (`strace -f -c -w`) and one rerun's CPU profile (`perf record`)."""
    check, hashing, split = [], [], []
    for i in range(runs):
        shutil.rmtree(root)
        shutil.copytree(pristine, root)
        split.append(sched_split([BIN / "replay", "--cache", cache, "--policy", LINUX_POLICY, root / "log.json"]))
    for i in range(runs):
        check.append(measured([BIN / "replay", "check", "--policy", LINUX_POLICY, pristine / "log.json"],
                              out / f"check.{i}", sample=False)["time"]["wall_s"])
    sizes: dict = {}
    for entry in (cache / "ac").iterdir():
        for read in json.loads(entry.read_text()).get("read_set", []):
            # A directory listed (`"listing": true`) is keyed by its sorted
            # names, not hashed as a file.
            if read.get("digest") and not read.get("listing"):
                sizes[read["path"]] = read["digest"]["size_bytes"]
    for i in range(runs):
        # CPU time, not wall: this machine may be shared.
        start = time.process_time()
        for path in sizes:
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                while chunk := f.read(1 << 20):
                    digest.update(chunk)
        hashing.append(time.process_time() - start)
    result = {
        "split": {k: summary([x[k] for x in split]) for k in ("wall_s", "cpu_s", "runqueue_s", "other_s")},
        "check_wall_s": summary(check),
        "read_set_files": len(sizes),
        "read_set_bytes": sum(sizes.values()),
        "read_set_largest": sorted(sizes.items(), key=lambda kv: -kv[1])[:4],
        "read_set_hash_s": summary(hashing),
    }
    if shutil.which("strace"):
        shutil.rmtree(root)
        shutil.copytree(pristine, root)
        table = out / "strace.txt"
        run(["strace", "-f", "-c", "-w", "-o", table, BIN / "replay", "--cache", cache, "--policy", LINUX_POLICY,
             root / "log.json"])
        calls = []
        for line in table.read_text().splitlines():
            fields = line.split()
            if len(fields) >= 5 and fields[0].replace(".", "").isdigit() and fields[-1] != "total":
                calls.append({"syscall": fields[-1], "seconds": float(fields[1]), "calls": int(fields[3])})
        result["strace_top"] = sorted(calls, key=lambda c: -c["seconds"])[:6]
        result["strace_total_s"] = sum(c["seconds"] for c in calls)
    if shutil.which("perf"):
        # A flat CPU profile of one rerun: the share of replay's samples in
        # sha256 itself and in read(2) (nearly all of it the hashing's).
        shutil.rmtree(root)
        shutil.copytree(pristine, root)
        data = out / "perf.data"
        code = subprocess.run(["perf", "record", "-q", "-F", "4000", "-g", "-o", str(data), "--", str(BIN / "replay"),
                               "--cache", str(cache), "--policy", str(LINUX_POLICY), str(root / "log.json")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        text = subprocess.run(["perf", "report", "-i", str(data), "--children", "--sort", "sym", "--stdio", "-g", "none"],
                              capture_output=True, text=True).stdout if code == 0 else ""
        sha = read = None
        for line in text.splitlines():
            fields = line.split()
            if len(fields) >= 4 and fields[0].endswith("%") and fields[2] == "[.]":
                if "sha2::" in fields[3]:
                    sha = (sha or 0.0) + float(fields[1].rstrip("%"))
                elif fields[3] == "read" and read is None:
                    read = float(fields[0].rstrip("%"))
        if sha is not None:
            result["perf_sha256_pct"] = sha
            result["perf_read_pct"] = read
    return result


def fig_cache(w: Workload, runs: int, out: Path) -> dict:
    """Figure 9: the action cache on w's log (`aotc --partitions auto`).
    Per run, into a fresh empty cache: (a) cold with the cache, (b) cold
    with `--no-cache` (a and b interleaved, alternating which goes first),
    (c) the same log again from the bitcode alone (outputs removed), warm
    cache: all hits expected, (d) the log of the one-function edit
    (`sqlite.sh edit`), warm cache: that function's partition (opt, llc)
    and the link expected to rerun. Each program is verified, and the
    edited function's return value read from its machine code, so a wrong
    restore cannot pass."""
    load_before = os.getloadavg()
    root = fresh(out / "root")
    version = int(next(line.split()[2] for line in (WORK / "sqlite" / "sqlite3.h").read_text().splitlines()
                       if line.startswith("#define SQLITE_VERSION_NUMBER ")))
    # Both logs are written into the same root, as a rebuild in place would be.
    pristine = {}
    for case, inputs in (("base", w.inputs), ("edit", sqlite_edit())):
        shutil.rmtree(root)
        root.mkdir()
        run([BIN / "aotc", "--log", root / "log.json", *inputs, "-o", root / "prog", "--partitions", "auto", *w.link])
        keep = out / f"pristine-{case}"
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(root, keep)
        pristine[case] = keep
    commands = len(json.loads((pristine["base"] / "log.json").read_text())["commands"])
    changed = sorted(p.name for p in (pristine["base"]).rglob("*.bc")
                     if (pristine["edit"] / p.relative_to(pristine["base"])).read_bytes() != p.read_bytes())
    cache = out / "cache"
    sides = ("cold_cache", "cold_no_cache", "rerun", "edit")
    raw: dict = {side: [] for side in sides}
    for i in range(runs):
        order = ["cold_cache", "cold_no_cache"] if i % 2 == 0 else ["cold_no_cache", "cold_cache"]
        for side in order + ["rerun", "edit"]:
            log(f"cache {w.name}: {side}, run {i + 1}/{runs}")
            # Every run starts from the bitcode aotc wrote, nothing else:
            # no outputs, no journal.
            shutil.rmtree(root)
            shutil.copytree(pristine["edit" if side == "edit" else "base"], root)
            if side == "cold_cache":
                # replay makes it (0700), empty.
                shutil.rmtree(cache, ignore_errors=True)
            report = out / f"{side}.{i}.report.json"
            use = ["--no-cache"] if side == "cold_no_cache" else ["--cache", cache]
            m = measured([BIN / "replay", *use, "--policy", LINUX_POLICY, "--report", report, root / "log.json"],
                         out / f"{side}.{i}", sample=False)
            w.verify(root)
            got = libversion(root / "prog")
            want = version + 1 if side == "edit" else version
            if got != want:
                sys.exit(f"bench: cache figure, {side}: sqlite3_libversion_number() returns {got} in the built "
                         f"program, not {want}: a wrong restore")
            doc = json.loads(report.read_text())
            totals = doc["totals"]
            entry = {
                "wall_s": m["time"]["wall_s"],
                "replay_wall_ms": totals["wall_ms"],
                "cpu_s": m["time"]["user_s"] + m["time"]["system_s"],
                "tools_cpu_ms": totals["cpu_ms"],
                "hits": totals.get("cache_hits", 0),
                "misses": totals.get("cache_misses", 0),
                "saved_ms": totals.get("cache_saved_ms", 0),
                "stored": sum(1 for c in doc["commands"] if (c.get("cache") or {}).get("stored")),
                "ran": [f"{c['id']} {c['tool']}" for c in doc["commands"] if c["status"] == "ok"],
                "statuses": sorted({c["status"] for c in doc["commands"]}),
                "prog_sha256": hashlib.sha256((root / "prog").read_bytes()).hexdigest(),
            }
            if side == "cold_cache":
                entry["cache_bytes"] = tree_bytes(cache)
                entry["cache_stats"] = subprocess.run([BIN / "replay", "cache", "stats", "--cache", cache],
                                                      capture_output=True, text=True).stdout.strip()
            raw[side].append(entry)
    log(f"cache {w.name}: where a hit's time goes")
    breakdown = hit_breakdown(root, pristine["base"], cache, runs, out)
    s = {side: {f: summary([r[f] for r in raw[side]]) for f in
                ("wall_s", "replay_wall_ms", "cpu_s", "hits", "misses", "saved_ms", "stored")} for side in sides}
    # Ratios run by run (each run's sides were measured together).
    cold = raw["cold_cache"]
    ratios = {
        "rerun_over_cold": summary([r["wall_s"] / c["wall_s"] for r, c in zip(raw["rerun"], cold)]),
        "edit_over_cold": summary([e["wall_s"] / c["wall_s"] for e, c in zip(raw["edit"], cold)]),
        "cold_cache_over_no_cache": summary([c["wall_s"] / n["wall_s"] for c, n in zip(cold, raw["cold_no_cache"])]),
        "rerun_over_no_cache": summary([r["wall_s"] / n["wall_s"] for r, n in zip(raw["rerun"], raw["cold_no_cache"])]),
        "edit_over_no_cache": summary([e["wall_s"] / n["wall_s"] for e, n in zip(raw["edit"], raw["cold_no_cache"])]),
        # CPU time of replay and its tools (time -v): what the cache costs
        # a cold run, less sensitive than wall to other work on the machine.
        "cold_cache_over_no_cache_cpu": summary([c["cpu_s"] / n["cpu_s"] for c, n in zip(cold, raw["cold_no_cache"])]),
    }
    return {
        "workload": w.name, "commands": commands, "raw": raw, "summary": s, "ratios": ratios,
        "edit": "`bench/workloads/sqlite.sh edit`: sqlite3_libversion_number() returns SQLITE_VERSION_NUMBER + 1",
        "edit_changed_bitcode": changed,
        "edit_reran": sorted({tuple(r["ran"]) for r in raw["edit"]}),
        "same_program": len({r["prog_sha256"] for side in ("cold_cache", "cold_no_cache", "rerun")
                             for r in raw[side]}) == 1,
        "cache_bytes": summary([r["cache_bytes"] for r in cold]),
        "cache_stats": cold[-1]["cache_stats"],
        "hit_breakdown": breakdown,
        # This machine may be shared: the 1-minute load around the figure.
        "loadavg_1m": [load_before[0], os.getloadavg()[0]], "cores": os.cpu_count(),
    }


def start_buildgrid(dir: Path):
    """A BuildGrid (the pinned one scripts/install-deps.sh installs) on a
    free loopback port with a disk CAS in dir; returns (process, url)."""
    import socket
    bgd = Path(os.environ.get("REPLAY_BGD", Path.home() / ".cache/replay-test/buildgrid-0.4.4/bin/bgd"))
    if not bgd.exists():
        sys.exit(f"bench: remote figure: no BuildGrid at {bgd}; run `bash scripts/install-deps.sh`")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (dir / "cas").mkdir(parents=True, exist_ok=True)
    config = dir / "buildgrid.yml"
    config.write_text(
        f"server:\n  - !channel\n    address: \"127.0.0.1:{port}\"\n    insecure-mode: true\n"
        "authorization:\n  method: none\n"
        f"storages:\n  - !disk-storage &cas\n    path: {dir / 'cas'}\n"
        "caches:\n  - !lru-action-cache &ac\n    storage: *cas\n    max-cached-refs: 100000\n"
        "    allow-updates: true\n    cache-failed-actions: false\n"
        "instances:\n  - name: ''\n    services:\n      - !action-cache\n        cache: *ac\n"
        "      - !cas\n        storage: *cas\n      - !bytestream\n        storage: *cas\n")
    logf = open(dir / "bgd.log", "w")
    proc = subprocess.Popen([bgd, "server", "start", config], stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
    deadline = time.time() + 90
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"grpc://127.0.0.1:{port}"
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                sys.exit(f"bench: BuildGrid did not start; see {dir / 'bgd.log'}")
            time.sleep(0.1)


def remote_counts(cache: Path) -> dict:
    """The remote line of `replay cache stats`, as numbers (bytes exact
    from stats.json)."""
    stats = json.loads((cache / "stats.json").read_text()) if (cache / "stats.json").exists() else {}
    return {k: stats.get(k, 0) for k in ("remote_hits", "remote_misses", "remote_uploads",
                                          "remote_bytes_down", "remote_bytes_up")}


def fig_remote(w: Workload, runs: int, out: Path) -> dict:
    """Figure 12: the remote cache (REAPI v2, a local BuildGrid) on w's log
    (`aotc --partitions auto`). Per run, with a fresh server: (a) machine A,
    cold: empty local cache, `--remote-cache` read-write (the policy trusts
    the server), uploads every result; (b) machine B: the same sources at
    the same path, its own empty local cache, warm from the remote; (c)
    machine A again, warm from its local cache alone (no remote). Each
    program is verified and all three are byte-identical."""
    load_before = os.getloadavg()
    root = fresh(out / "root")
    run([BIN / "aotc", "--log", root / "log.json", *w.inputs, "-o", root / "prog", "--partitions", "auto", *w.link])
    pristine = out / "pristine"
    shutil.rmtree(pristine, ignore_errors=True)
    shutil.copytree(root, pristine)
    commands = len(json.loads((pristine / "log.json").read_text())["commands"])
    sides = ("a_cold_upload", "b_remote_warm", "c_local_warm")
    raw: dict = {side: [] for side in sides}
    for i in range(runs):
        server_dir = fresh(out / "server")
        proc, url = start_buildgrid(server_dir)
        try:
            policy = out / "trusting.toml"
            policy.write_text(f'[policy]\nextends = ["{LINUX_POLICY}"]\nremote_cache_writers = ["{url}"]\n')
            caches = {"a": out / "cache-a", "b": out / "cache-b"}
            for cache in caches.values():
                shutil.rmtree(cache, ignore_errors=True)
            for side in sides:
                log(f"remote {w.name}: {side}, run {i + 1}/{runs}")
                shutil.rmtree(root)
                shutil.copytree(pristine, root)
                cache = caches["b" if side == "b_remote_warm" else "a"]
                before = remote_counts(cache)
                remote = [] if side == "c_local_warm" else ["--remote-cache", url]
                report = out / f"{side}.{i}.report.json"
                m = measured([BIN / "replay", "--cache", cache, *remote, "--policy", policy,
                              "--report", report, root / "log.json"], out / f"{side}.{i}", sample=False)
                w.verify(root)
                doc = json.loads(report.read_text())
                after = remote_counts(cache)
                raw[side].append({
                    "wall_s": m["time"]["wall_s"],
                    "cpu_s": m["time"]["user_s"] + m["time"]["system_s"],
                    "hits": doc["totals"].get("cache_hits", 0),
                    "remote": {k: after[k] - before[k] for k in after},
                    "notes": sorted({(c.get("cache") or {}).get("remote") or "" for c in doc["commands"]}),
                    "prog_sha256": hashlib.sha256((root / "prog").read_bytes()).hexdigest(),
                })
        finally:
            proc.kill()
            proc.wait()
    s = {side: {"wall_s": summary([r["wall_s"] for r in raw[side]]),
                "cpu_s": summary([r["cpu_s"] for r in raw[side]])} for side in sides}
    return {
        "workload": w.name, "commands": commands, "raw": raw, "summary": s,
        "ratios": {
            "remote_over_cold": summary([b["wall_s"] / a["wall_s"] for a, b in
                                         zip(raw["a_cold_upload"], raw["b_remote_warm"])]),
            "remote_over_local": summary([b["wall_s"] / c["wall_s"] for b, c in
                                          zip(raw["b_remote_warm"], raw["c_local_warm"])]),
        },
        "bytes_up": summary([r["remote"]["remote_bytes_up"] for r in raw["a_cold_upload"]]),
        "bytes_down": summary([r["remote"]["remote_bytes_down"] for r in raw["b_remote_warm"]]),
        "same_program": len({r["prog_sha256"] for side in sides for r in raw[side]}) == 1,
        "loadavg_1m": [load_before[0], os.getloadavg()[0]], "cores": os.cpu_count(),
        "bin": str(BIN),
    }


def render_remote(re_: dict) -> list:
    """Figure 12's section."""
    s, r = re_["summary"], re_["ratios"]
    rows = [("a. machine A, cold, uploading (read-write)", "a_cold_upload"),
            ("b. machine B, empty local cache, warm from the remote", "b_remote_warm"),
            ("c. machine A again, warm local cache, no remote", "c_local_warm")]
    lines = [
        f"## 12. Remote cache ({re_['workload']}, `--partitions auto`, a local BuildGrid 0.4.4)",
        "",
        f"The log ({re_['commands']} commands) is run three times per run, each from aotc's bitcode alone at the "
        "same path, against a fresh BuildGrid on loopback (disk CAS): (a) an empty local cache with "
        "`--remote-cache` read-write, (b) another empty local cache with the remote (all remote hits "
        "expected), (c) (a)'s warm local cache without the remote. Binaries: "
        f"`{re_['bin']}`.",
        "",
        "| run | wall | CPU | remote hits | uploads | bytes moved |",
        "|---|---|---|---|---|---|",
    ]
    for label, side in rows:
        last = re_["raw"][side][-1]["remote"]
        moved = last["remote_bytes_up"] + last["remote_bytes_down"]
        lines.append(f"| {label} | {cell(s[side]['wall_s'], 's', 1, 2)} | {cell(s[side]['cpu_s'], 's', 1, 2)} | "
                     f"{last['remote_hits']} | {last['remote_uploads']} | {moved / MIB:.1f} MiB |")
    lines += [
        "",
        f"- b / a (per run): **{r['remote_over_cold']['median']:.3f}**; b / c: "
        f"**{r['remote_over_local']['median']:.3f}** (what the network round trips and downloads cost over "
        "local hits).",
        f"- Uploaded in a: {cell(re_['bytes_up'], 'MiB', MIB)}; downloaded in b: {cell(re_['bytes_down'], 'MiB', MIB)}.",
        f"- Programs of a, b and c byte-identical: {'yes' if re_['same_program'] else '**no**'}.",
        f"- 1-minute load average before and after: {re_['loadavg_1m'][0]:.1f}, {re_['loadavg_1m'][1]:.1f} "
        f"({re_['cores']} cores).",
        "",
    ]
    return lines


def start_farm(dir: Path):
    """The end-to-end tests' build farm (PostgreSQL and BuildGrid with its
    SQL scheduler and Bots service, tests/src/farm.rs) through its
    `test-farm` helper, and two `replay worker`s on it (linux.toml, each
    its own root under dir); returns (farm, workers, url)."""
    helper = BIN / "test-farm"
    if not helper.exists():
        sys.exit(f"bench: remote execution figure: no {helper}; build it with "
                 "`cargo build --release -p replay-e2e --bin test-farm`")
    dir.mkdir(parents=True, exist_ok=True)
    farm = subprocess.Popen([helper], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=open(dir / "farm.log", "w"))
    url = farm.stdout.readline().decode(errors="replace").strip()
    if not url.startswith("grpc://"):
        farm.kill()
        farm.wait()
        sys.exit(f"bench: the farm did not start; see {dir / 'farm.log'}")
    workers = []
    for name in ("bench-w1", "bench-w2"):
        workers.append(subprocess.Popen(
            [BIN / "replay", "worker", "--server", url, "--bot-id", name, "--policy", LINUX_POLICY,
             "--root", dir / name],
            stdin=subprocess.DEVNULL, stdout=open(dir / f"{name}.log", "w"), stderr=subprocess.STDOUT,
            start_new_session=True))
    return farm, workers, url


def stop_farm(farm, workers) -> None:
    """Stops the workers (SIGTERM, then their groups killed) and the farm
    (its stdin closed: it stops PostgreSQL and BuildGrid itself)."""
    import signal
    for worker in workers:
        worker.terminate()
    for worker in workers:
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(worker.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        worker.wait()
    farm.stdin.close()
    try:
        farm.wait(timeout=60)
    except subprocess.TimeoutExpired:
        farm.kill()
        farm.wait()


def fig_remote_exec(w: Workload, runs: int, out: Path) -> dict:
    """Figure 13: remote execution on w's log (`aotc --partitions auto`),
    every command really run. A first `-j 1` run (not counted) measures
    each tool kind's peak, given to `-j 2` as `--predict` (as in figure
    10). Then, rotated, each from aotc's bitcode alone: (a) `-j 1` here;
    (b) `-j 2` here; (c) `--remote-executor` to a fresh farm (PostgreSQL
    and BuildGrid, the tests' own) with two `replay worker`s on this
    machine, an empty local cache and no `-j` (8 on the farm at once). The
    farm is started, and stopped, outside the clock. Every program is
    verified."""
    load_before = os.getloadavg()
    root, pristine = pristine_log(w, out)
    commands = len(json.loads((pristine / "log.json").read_text())["commands"])

    def replay_run(side: str, i, flags: list) -> dict:
        shutil.rmtree(root)
        shutil.copytree(pristine, root)
        report = out / f"{side}.{i}.report.json"
        m = measured([BIN / "replay", *flags, "--policy", LINUX_POLICY, "--report", report, root / "log.json"],
                     out / f"{side}.{i}", sample=False)
        w.verify(root)
        doc = json.loads(report.read_text())
        ran_on: dict = {}
        for c in doc["commands"]:
            where = (c.get("cache") or {}).get("ran_on") or "local"
            ran_on[where] = ran_on.get(where, 0) + 1
        return {"wall_s": m["time"]["wall_s"], "cpu_s": m["time"]["user_s"] + m["time"]["system_s"],
                "ran_on": ran_on, "statuses": sorted({c["status"] for c in doc["commands"]}),
                "prog_sha256": hashlib.sha256((root / "prog").read_bytes()).hexdigest(), "doc": doc}

    log(f"remote_exec {w.name}: calibrating (-j 1, not counted)")
    calib = replay_run("calibrate", 0, ["--no-cache", "-j", "1"])
    per_kind: dict = {}
    for c in calib.pop("doc")["commands"]:
        m = c["outcome"]["measurements"]
        peak = max((m.get("peak_process") or {}).get("bytes", 0), m["peak_tree_rss_sampled"])
        per_kind[c["tool"]] = max(per_kind.get(c["tool"], 0), peak)
    predict = [a for kind, peak in sorted(per_kind.items()) for a in ("--predict", f"{kind}={mib_up(peak)}")]
    sides = ["j1", "j2", "remote"]
    raw: dict = {side: [] for side in sides}
    for i in range(runs):
        for side in sides[i % len(sides):] + sides[:i % len(sides)]:
            log(f"remote_exec {w.name}: {side}, run {i + 1}/{runs}")
            if side == "j1":
                entry = replay_run(side, i, ["--no-cache", "-j", "1"])
            elif side == "j2":
                entry = replay_run(side, i, ["--no-cache", "-j", "2", *predict])
            else:
                farm_dir = fresh(out / "farm")
                farm, workers, url = start_farm(farm_dir)
                try:
                    entry = replay_run(side, i, ["--cache", fresh(out / "cache"), "--remote-executor", url])
                finally:
                    stop_farm(farm, workers)
            entry.pop("doc")
            raw[side].append(entry)
    s = {side: {f: summary([r[f] for r in raw[side]]) for f in ("wall_s", "cpu_s")} for side in sides}
    ratio = lambda a, b: summary([x["wall_s"] / y["wall_s"] for x, y in zip(raw[a], raw[b])])
    return {
        "workload": w.name, "commands": commands, "raw": raw, "summary": s, "calibration": calib,
        "predict": [p for p in predict if p != "--predict"],
        "ratios": {"remote_over_j1": ratio("remote", "j1"), "remote_over_j2": ratio("remote", "j2"),
                   "j2_over_j1": ratio("j2", "j1")},
        "on_workers": summary([sum(n for where, n in r["ran_on"].items() if where.startswith("replay worker "))
                               for r in raw["remote"]]),
        "workers_used": summary([sum(1 for where in r["ran_on"] if where.startswith("replay worker "))
                                 for r in raw["remote"]]),
        "same_program": len({r["prog_sha256"] for side in sides for r in raw[side]}) == 1,
        # This machine may be shared: the 1-minute load around the figure.
        "loadavg_1m": [load_before[0], os.getloadavg()[0]], "cores": os.cpu_count(),
        "bin": str(BIN),
    }


def render_remote_exec(rx: dict) -> list:
    """Figure 13's section."""
    s, r = rx["summary"], rx["ratios"]
    rows = [("a. `-j 1` here", "j1"), ("b. `-j 2` here (`--predict` from a `-j 1` run)", "j2"),
            ("c. `--remote-executor`, two `replay worker`s on this machine (8 at once)", "remote")]
    lines = [
        f"## 13. Remote execution ({rx['workload']}, `--partitions auto`, a local BuildGrid 0.4.4 farm)",
        "",
        f"The log ({rx['commands']} commands), every command run, from aotc's bitcode alone each time: "
        "(a) and (b) here without a cache; (c) through a fresh farm (PostgreSQL and BuildGrid with its SQL "
        "scheduler, as the end-to-end tests start it; started and stopped outside the clock) with two "
        "`replay worker`s on this same machine and an empty local cache. Binaries: "
        f"`{rx['bin']}`.",
        "",
        "| run | wall | CPU (client) |",
        "|---|---|---|",
    ]
    for label, side in rows:
        lines.append(f"| {label} | {cell(s[side]['wall_s'], 's', 1, 2)} | {cell(s[side]['cpu_s'], 's', 1, 2)} |")
    lines += [
        "",
        f"- c / a (per run): **{r['remote_over_j1']['median']:.3f}**; c / b: **{r['remote_over_j2']['median']:.3f}**; "
        f"b / a: {r['j2_over_j1']['median']:.3f}.",
        f"- Commands that ran on a worker in c: {rx['on_workers']['median']:.0f} of {rx['commands']} "
        f"(median); workers used: {rx['workers_used']['median']:.0f}.",
        f"- Programs of a, b and c byte-identical: {'yes' if rx['same_program'] else '**no**'}.",
        f"- 1-minute load average before and after: {rx['loadavg_1m'][0]:.1f}, {rx['loadavg_1m'][1]:.1f} "
        f"({rx['cores']} cores; the workers share them with the client).",
        "",
    ]
    return lines


def timing_overlap(commands: list) -> dict:
    """From the report's per-command timing: how many commands ran while
    another did, the most running at once, the time two or more ran, and
    the largest sum of the memory admitted for the commands running."""
    ran = [c for c in commands if c.get("timing") and c.get("outcome")]
    iv = [(c["timing"]["started_ms"], c["timing"]["ended_ms"], c["timing"].get("admitted") or 0) for c in ran]
    overlapped = sum(1 for i, (s, e, _) in enumerate(iv)
                     if any(j != i and s < e2 and s2 < e for j, (s2, e2, _) in enumerate(iv)))
    # Ends sort before starts at the same millisecond: touching is not overlapping.
    events = sorted([(s, 1, a) for s, _, a in iv] + [(e, 0, a) for _, e, a in iv])
    running = most = admitted = most_admitted = 0
    both_ms, last = 0, 0
    for at, start, a in events:
        if running >= 2:
            both_ms += at - last
        last = at
        running += 1 if start else -1
        admitted += a if start else -a
        most, most_admitted = max(most, running), max(most_admitted, admitted)
    return {"overlapped": overlapped, "max_running": most, "two_or_more_s": both_ms / 1000,
            "max_admitted_sum": most_admitted}


def mib_up(n: int) -> str:
    """A size for replay's command line, in whole MiB rounded up."""
    return f"{-(-n // MIB)}M"


def fig_parallel(w: Workload, runs: int, out: Path) -> dict:
    """Figure 10: parallel runs (`-j N`) on w's log (`aotc --partitions
    auto`), every tool really run (`--no-cache`). A first `-j 1` run
    (not counted) measures each tool kind's largest peak, given to every
    parallel run as `--predict KIND=SIZE` so a cold run can be parallel.
    Then, interleaved, each from aotc's bitcode alone: (a) `-j 1`; (b)
    `-j 2` under a generous budget; (c) `-j 2` under a budget just above
    the largest tool's peak (x 1.1: two large tools cannot run at once);
    (d) `replay drive -j 2 -- aotc` against `aotc --exec`, whose wall and
    pipeline peak (every process at one instant) `treepeak` measures, as in
    figure 1. Every program is verified."""
    load_before = os.getloadavg()
    root, pristine = pristine_log(w, out)
    commands = len(json.loads((pristine / "log.json").read_text())["commands"])

    def replay_run(side: str, i, flags: list) -> dict:
        shutil.rmtree(root)
        shutil.copytree(pristine, root)
        report = out / f"{side}.{i}.report.json"
        m = measured([BIN / "replay", "--no-cache", *flags, "--policy", LINUX_POLICY, "--report", report,
                      root / "log.json"], out / f"{side}.{i}", sample=False)
        w.verify(root)
        # measured() names its files after the tag less its last suffix.
        return parallel_entry(m, json.loads(report.read_text()), (out / f"{side}.{i}").with_suffix(".out"),
                              root / "prog")

    log(f"parallel {w.name}: calibrating (-j 1, not counted)")
    calib = replay_run("calibrate", 0, ["-j", "1"])
    doc = json.loads((out / "calibrate.0.report.json").read_text())
    per_kind: dict = {}
    for c in doc["commands"]:
        m = c["outcome"]["measurements"]
        # The tree's sampled peak, but never above the sum of its processes'
        # own peaks: a sample taken while a spawned child still shares its
        # parent's memory (clang's, before the child execs ld) counts that
        # memory twice, and would make the budget depend on a sample's luck.
        own = [p["bytes"] for p in m.get("processes", [])]
        tree = min(m["peak_tree_rss_sampled"], sum(own)) if own else m["peak_tree_rss_sampled"]
        peak = max((m.get("peak_process") or {}).get("bytes", 0), tree)
        per_kind[c["tool"]] = max(per_kind.get(c["tool"], 0), peak)
    largest = max(per_kind.values())
    predict = [a for kind, peak in sorted(per_kind.items()) for a in ("--predict", f"{kind}={mib_up(peak)}")]
    generous = 4 * 1024 * MIB
    tight = int(largest * 1.1)
    flags = {
        "j1": ["-j", "1"],
        "j2_generous": ["-j", "2", "--memory-budget", mib_up(generous), *predict],
        "j2_tight": ["-j", "2", "--memory-budget", mib_up(tight), *predict],
    }
    sides = ["j1", "j2_generous", "j2_tight", "drive_j2", "exec"]
    raw: dict = {side: [] for side in sides}
    for i in range(runs):
        # Rotated, so no side always runs first (or right after another).
        for side in sides[i % len(sides):] + sides[:i % len(sides)]:
            log(f"parallel {w.name}: {side}, run {i + 1}/{runs}")
            if side in flags:
                raw[side].append(replay_run(side, i, flags[side]))
                continue
            root = fresh(out / "root")
            tag = out / f"{side}.{i}"
            report = out / f"{side}.{i}.report.json"
            if side == "drive_j2":
                cmd = [BIN / "replay", "drive", "-j", "2", "--no-cache", "--memory-budget", mib_up(generous), *predict,
                       "--policy", LINUX_POLICY, "--root", root, "--report", report, "--",
                       BIN / "aotc", *w.aotc_args(root, "auto")]
            else:
                cmd = [BIN / "aotc", "--exec", "--log", root / "log.json", *w.aotc_args(root, "auto")]
            m = measured(cmd, tag)
            w.verify(root)
            peak = m["treepeak"]
            if side == "drive_j2":
                entry = parallel_entry(m, json.loads(report.read_text()), tag.with_suffix(".out"), root / "prog")
            else:
                entry = {"wall_s": m["time"]["wall_s"], "cpu_s": m["time"]["user_s"] + m["time"]["system_s"],
                         "prog_sha256": hashlib.sha256((root / "prog").read_bytes()).hexdigest()}
            entry.update({
                "treepeak_wall_s": peak["wall_s"],
                "pipeline_peak": peak["peak_tree_rss"],
                "compiler_peak": peak["by_comm"].get(COMPILER_COMM, 0),
                "largest_tool": largest_tool(peak["by_comm"]),
                # What the tools held together at the pipeline's peak instant.
                "tools_at_peak": sum(p["rss"] for p in peak["at_peak"] if p["comm"] != COMPILER_COMM),
            })
            raw[side].append(entry)
    fields = ("wall_s", "cpu_s", "peak_sum_rss", "memory_budget", "overlapped", "max_running", "two_or_more_s",
              "max_admitted_sum", "stopped_for_budget", "pipeline_peak", "compiler_peak", "tools_at_peak")
    s = {side: {f: summary([r.get(f) for r in raw[side]]) for f in fields} for side in sides}
    a = raw["j1"]
    ratios = {
        "j2_generous_over_j1": summary([b["wall_s"] / x["wall_s"] for b, x in zip(raw["j2_generous"], a)]),
        "j2_tight_over_j1": summary([c["wall_s"] / x["wall_s"] for c, x in zip(raw["j2_tight"], a)]),
        "drive_over_exec_wall": summary([d["wall_s"] / e["wall_s"] for d, e in zip(raw["drive_j2"], raw["exec"])]),
        "drive_over_exec_peak": summary([d["pipeline_peak"] / e["pipeline_peak"]
                                         for d, e in zip(raw["drive_j2"], raw["exec"])]),
    }
    over = {side: [r["peak_sum_rss"] - r["memory_budget"] for r in raw[side] if r.get("memory_budget")]
            for side in ("j2_generous", "j2_tight", "drive_j2")}
    return {
        "workload": w.name, "commands": commands, "raw": raw, "summary": s, "ratios": ratios,
        "calibration": calib, "per_kind_peak": per_kind, "largest_peak": largest,
        "predict": [p for p in predict if p != "--predict"],
        "budgets": {"generous": mib_up(generous), "tight": mib_up(tight)},
        "over_budget_runs": {side: sum(1 for d in v if d > 0) for side, v in over.items()},
        "most_over_budget": {side: max(v, default=None) for side, v in over.items()},
        "same_program": len({r["prog_sha256"] for side in ("j1", "j2_generous", "j2_tight", "drive_j2")
                             for r in raw[side]}) == 1,
        "same_as_exec": {r["prog_sha256"] for r in raw["exec"]} == {r["prog_sha256"] for r in a},
        # This machine may be shared: the 1-minute load around the figure.
        "loadavg_1m": [load_before[0], os.getloadavg()[0]], "cores": os.cpu_count(),
    }


def fig_realbuild(runs: int, out: Path) -> dict:
    """Figure 11: a real C project's build through `replay import` and
    `replay -j 2`, against `ninja -j 2` running the same commands. The
    workload is Debian's cJSON (static, its tests on), configured by its
    own CMake for Ninja and clang-14 (`bench/workloads/cjson.sh`), its
    `ninja -t compdb` imported under `policies/linux-cc.toml`. Each run
    starts from the configured tree with nothing built (`ninja -t clean`).
    Sides, interleaved: (a) `ninja -j 2`; (b) `replay -j 2 --no-cache`,
    with `--predict` per tool kind from a first `-j 1` run (not counted:
    without a cache or a prediction a cold run is one at a time); (c)
    `replay -j 2` with a warm action cache (filled by one run, not
    counted): every command a hit. Every run's outputs are checked."""
    load_before = os.getloadavg()
    root = out / "cjson"
    run(["bash", BENCH / "workloads" / "cjson.sh", root, BIN / "replay"])
    log_path = root / "replay.log.json"
    commands = json.loads(log_path.read_text())["commands"]
    outputs = [o for c in commands for o in c["outputs"]]

    def reset() -> None:
        run(["ninja", "-C", root / "build", "-t", "clean"])
        journal = root / "replay.log.json.journal"
        if journal.exists():
            journal.unlink()

    def verify(side: str) -> None:
        # Ninja reads a dependency file into `.ninja_deps` and deletes it.
        missing = [o for o in outputs if not os.path.lexists(root / o)
                   and not (side == "ninja" and o.endswith(".d"))]
        if missing:
            sys.exit(f"bench: realbuild, {side}: {len(missing)} outputs not built, e.g. {missing[0]}")

    cache = fresh(out / "cache")

    def replay_cmd(flags: list, report: Path) -> list:
        return [BIN / "replay", "-j", "2", *flags, "--policy", CC_POLICY, "--report", report, log_path]

    log("realbuild cjson: calibrating (replay -j 1, not counted)")
    reset()
    report = out / "calibrate.report.json"
    run([BIN / "replay", "-j", "1", "--no-cache", "--policy", CC_POLICY, "--report", report, log_path])
    per_kind: dict = {}
    for c in json.loads(report.read_text())["commands"]:
        m = (c.get("outcome") or {}).get("measurements")
        if m:
            per_kind[c["tool"]] = max(per_kind.get(c["tool"], 0), m["peak_tree_rss_sampled"])
    predict = [a for kind, peak in sorted(per_kind.items()) for a in ("--predict", f"{kind}={mib_up(peak)}")]
    log("realbuild cjson: filling the cache (not counted)")
    reset()
    run(replay_cmd(["--cache", cache], out / "fill.report.json"))
    sides = ["ninja", "replay_j2", "replay_j2_warm"]
    raw: dict = {side: [] for side in sides}
    for i in range(runs):
        for side in sides[i % len(sides):] + sides[:i % len(sides)]:
            log(f"realbuild cjson: {side}, run {i + 1}/{runs}")
            reset()
            tag = out / f"{side}.{i}"
            report = out / f"{side}.{i}.report.json"
            if side == "ninja":
                cmd = ["ninja", "-C", root / "build", "-j", "2"]
            elif side == "replay_j2":
                cmd = replay_cmd(["--no-cache", "--memory-budget", "4096M", *predict], report)
            else:
                cmd = replay_cmd(["--cache", cache], report)
            m = measured(cmd, tag, sample=False)
            verify(side)
            entry = {"wall_s": m["time"]["wall_s"], "cpu_s": m["time"]["user_s"] + m["time"]["system_s"]}
            if side != "ninja":
                totals = json.loads(report.read_text())["totals"]
                entry.update({"ran": totals["ran"], "cache_hits": totals["cache_hits"],
                              "replay_peak_rss": totals["replay_peak_rss"]})
            raw[side].append(entry)
    s = {side: {f: summary([r.get(f) for r in raw[side]]) for f in ("wall_s", "cpu_s", "ran", "cache_hits")}
         for side in sides}
    n = raw["ninja"]
    ratios = {
        "j2_over_ninja": summary([b["wall_s"] / a["wall_s"] for b, a in zip(raw["replay_j2"], n)]),
        "warm_over_ninja": summary([c["wall_s"] / a["wall_s"] for c, a in zip(raw["replay_j2_warm"], n)]),
    }
    return {
        "workload": "cjson", "commands": len(commands), "raw": raw, "summary": s, "ratios": ratios,
        "predict": [p for p in predict if p != "--predict"],
        "loadavg_1m": [load_before[0], os.getloadavg()[0]], "cores": os.cpu_count(),
    }


def render_realbuild(rb: dict) -> list:
    """Figure 11's section."""
    s, r = rb["summary"], rb["ratios"]
    return [
        f"## 11. A real build: {rb['workload']} through `replay import` ({rb['commands']} commands)",
        "",
        "Debian's cJSON source package (static, its tests on), configured by its own CMake for Ninja and "
        "clang-14 (`bench/workloads/cjson.sh`); `ninja -t compdb` imported by `replay import compdb` under "
        "`policies/linux-cc.toml` (install, test and regeneration rules left out). Every run from the configured "
        "tree with nothing built (`ninja -t clean`); outputs checked after each.",
        "",
        "| side | wall | CPU (all processes) | tools run | cache hits |",
        "|---|---|---|---|---|",
        f"| (a) `ninja -j 2` | {cell(s['ninja']['wall_s'], 's', 1, 2)} | {cell(s['ninja']['cpu_s'], 's', 1, 2)} | "
        f"{rb['commands']} | - |",
        f"| (b) `replay -j 2 --no-cache` | {cell(s['replay_j2']['wall_s'], 's', 1, 2)} | "
        f"{cell(s['replay_j2']['cpu_s'], 's', 1, 2)} | {cell(s['replay_j2']['ran'], '', 1, 0)} | - |",
        f"| (c) `replay -j 2`, warm cache | {cell(s['replay_j2_warm']['wall_s'], 's', 1, 2)} | "
        f"{cell(s['replay_j2_warm']['cpu_s'], 's', 1, 2)} | {cell(s['replay_j2_warm']['ran'], '', 1, 0)} | "
        f"{cell(s['replay_j2_warm']['cache_hits'], '', 1, 0)} |",
        "",
        f"- (b) / (a), wall: **{r['j2_over_ninja']['median']:.2f}** (per run {r['j2_over_ninja']['min']:.2f}–"
        f"{r['j2_over_ninja']['max']:.2f}): replay's overhead on a real build (the check of every command, the "
        "sandbox, ptrace on every file-system call, staging and the journal's fsync).",
        f"- (c) / (a), wall: **{r['warm_over_ninja']['median']:.2f}** (per run {r['warm_over_ninja']['min']:.2f}–"
        f"{r['warm_over_ninja']['max']:.2f}).",
        f"- (b) ran with {' '.join('`--predict ' + p + '`' for p in rb['predict'])} (each kind's largest sampled "
        "tree peak in a `-j 1` run) and `--memory-budget 4096M`.",
        f"- 1-minute load average before and after the figure: {rb['loadavg_1m'][0]:.1f}, {rb['loadavg_1m'][1]:.1f} "
        f"({rb['cores']} cores).",
        "",
    ]


def parallel_entry(m: dict, doc: dict, output: Path, prog: Path) -> dict:
    """One replay run of figure 10, from its clock and its report."""
    totals = doc["totals"]
    link = doc["commands"][-1]
    return {
        "wall_s": m["time"]["wall_s"],
        "replay_wall_ms": totals["wall_ms"],
        "cpu_s": m["time"]["user_s"] + m["time"]["system_s"],
        "jobs": totals.get("jobs"),
        "memory_budget": totals.get("memory_budget"),
        "peak_sum_rss": totals.get("peak_sum_rss"),
        "largest_tool_tree": totals["peak_tree_rss_sampled"],
        "ran": totals["ran"],
        **timing_overlap(doc["commands"]),
        # A tool stopped for the budget (a wrong prediction) says so on stderr.
        "stopped_for_budget": output.read_text(errors="replace").count("was stopped to keep the tools running"),
        "prog_sha256": hashlib.sha256(prog.read_bytes()).hexdigest(),
        # The link (clang runs ld): its sampled tree peak against its
        # processes' own peaks (a sample while clang's child shares its
        # memory, before ld's exec, counts that memory twice).
        "link_tree_sampled": link["outcome"]["measurements"]["peak_tree_rss_sampled"],
        "link_processes": {p["name"]: p["bytes"] for p in link["outcome"]["measurements"]["processes"]},
    }


# --------------------------------------------------------------------------
# the report


def machine() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    versions = {}
    for name, cmd in (("rustc", ["rustc", "--version"]), ("llvm", ["/usr/lib/llvm-14/bin/llvm-config", "--version"])):
        try:
            versions[name] = subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
        except OSError:
            versions[name] = "unknown"
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem / 2**30, 1),
            "kernel": platform.release(), "date": datetime.date.today().isoformat(),
            "commit": commit.stdout.strip(), **versions}


def render(results: dict, args: argparse.Namespace) -> str:
    m = results["machine"]
    lines = [
        "# Benchmark results",
        "",
        f"Measured on {m['date']} at commit `{m['commit']}`: {m['cpu']}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB, Linux {m['kernel']}, {m['llvm'] and 'LLVM ' + m['llvm']}, {m['rustc']}.",
        "",
        f"Rerun: `bash bench/run.sh` (this run: `python3 bench/run.py {' '.join(results.get('argv', ['--runs', str(results['runs'])]))}`). "
        f"Each cell is the median of {args.runs} runs, with (min–max); the sides of a comparison are run "
        "interleaved in the same session. Raw runs are in `bench/results.json`.",
        "",
    ]
    f = results.get("pipeline")
    if f:
        s = f["summary"]
        d, e, one = s["drive/auto"], s["exec/auto"], s["drive/1"]
        ideal = s["ideal_ratio"]
        ratio = s["ratio_drive_over_exec"]["median"]
        lines += [
            f"## 1. Pipeline peak memory ({f['workload']})",
            "",
            "Peak = the largest sum of RSS over every process of the pipeline at one instant, from `treepeak` "
            "(bench/tools: walks the tree under /proc every 1 ms; independent of replay's monitor). "
            "`time -v` = `/usr/bin/time -v`'s maximum resident set size (the largest single process).",
            "",
            "| pipeline | peak (all processes) | largest process (treepeak) | largest process (time -v) | wall |",
            "|---|---|---|---|---|",
            f"| `replay drive -- aotc` | {cell(d['peak_tree_rss'], 'MiB', MIB)} | {cell(d['peak_process_rss'], 'MiB', MIB)} "
            f"| {cell(d['time_v_max_rss'], 'MiB', MIB)} | {cell(d['wall_s'], 's')} |",
            f"| `aotc --exec` | {cell(e['peak_tree_rss'], 'MiB', MIB)} | {cell(e['peak_process_rss'], 'MiB', MIB)} "
            f"| {cell(e['time_v_max_rss'], 'MiB', MIB)} | {cell(e['wall_s'], 's')} |",
            "",
            f"- drive / exec peak: **{ratio:.2f}** (per-run ratios {cell(s['ratio_drive_over_exec'], '', 1, 2)}).",
            f"- compiler `aotc` alone (C): {cell(d['compiler_peak'], 'MiB', MIB)}; largest tool step, all its "
            f"processes (T, replay's sampler): {cell(d['tool_step_tree_peak'], 'MiB', MIB)}; largest single tool "
            f"process (`{d['largest_tool']}`): {cell(d['largest_tool_peak'], 'MiB', MIB)}; "
            f"ideal max(C, T) / (C + T) = **{ideal:.2f}**" if ideal else "- ideal ratio: n/a",
            f"- in the baseline, the tools held {cell(e['tools_at_exec_peak'], 'MiB', MIB)} besides `aotc` at its "
            "peak instant (treepeak's snapshot).",
            f"- replay's own figures in the same drive runs: producer peak {cell(d['replay_producer_peak'], 'MiB', MIB)}, "
            f"largest tool {cell(d['replay_tool_peak'], 'MiB', MIB)}, replay itself {cell(d['replay_own_peak'], 'MiB', MIB)}.",
            f"- treepeak's mean time per walk of the tree: {cell(summary([r['mean_sample_us'] for r in f['runs']['drive/auto']]), 'µs', 1, 0)}.",
            "",
        ]
        if ideal and ratio:
            recovered = 100 * (1 - ratio) / (1 - ideal)
            lines += [f"Driver mode's peak is {ratio:.2f} of the baseline's, against an ideal of {ideal:.2f}: "
                      f"it recovers {recovered:.0f}% of the memory that could be recovered"
                      + (" (over 100%: the baseline's peak exceeded C + T, as `aotc` grows while its tools run)."
                         if recovered > 100 else
                         "; the rest is replay itself, alive beside the compiler.") , ""]
        lines += [
            f"## 2. Partitioning ({f['workload']}, driver mode)",
            "",
            "| partitions | commands | wall | largest tool's peak (replay, exact) | CPU, all processes | tools' CPU (replay) |",
            "|---|---|---|---|---|---|",
            f"| 1 | {one['commands']['median']:.0f} | {cell(one['wall_s'], 's')} | {cell(one['replay_tool_peak'], 'MiB', MIB)} "
            f"| {cell(one['cpu_s'], 's')} | {cell(one['replay_tools_cpu_s'], 's')} |",
            f"| auto | {d['commands']['median']:.0f} | {cell(d['wall_s'], 's')} | {cell(d['replay_tool_peak'], 'MiB', MIB)} "
            f"| {cell(d['cpu_s'], 's')} | {cell(d['replay_tools_cpu_s'], 's')} |",
            "",
            "Tools run one at a time, so more partitions cannot lower wall time here; they lower the largest tool's "
            "peak and let a content-addressed cache reuse unchanged partitions.",
            "",
        ]
    o = results.get("overhead")
    if o:
        lines += [
            "## 3. Replay overhead",
            "",
            "`replay --policy policies/linux.toml LOG` (validate, sandbox, trace, journal, atomic outputs) against a "
            "plain `sh -e` script running exactly the same commands in the same order, as `aotc --exec` runs them.",
            "",
            "| log | commands | replay | sh -e | replay / sh | replay's own peak RSS |",
            "|---|---|---|---|---|---|",
        ]
        for key in ("real", "small", "small_opt"):
            r = o.get(key)
            if r:
                name = r.get("workload", "trivial tool (`memtouch --mib=0`)")
                lines.append(f"| {name} | {r['commands']} | {cell(r['replay_wall_s'], 's', 1, 2)} | "
                             f"{cell(r['sh_wall_s'], 's', 1, 2)} | **{r['ratio']['median']:.2f}** "
                             f"({r['ratio']['min']:.2f}–{r['ratio']['max']:.2f}) | {cell(r['replay_own_peak'], 'MiB', MIB)} |")
        for key, what in (("small", "a trivial command"), ("small_opt", "an `opt -O0` command")):
            small = o.get(key)
            if small:
                per = (small["replay_wall_s"]["median"] - small["sh_wall_s"]["median"]) / small["commands"] * 1000
                lines += ["", f"Per {what}, replay adds about {per:.1f} ms (the sandbox launcher, ptrace on "
                              "every file-system call, staging, the journal; see `bench/PROFILE.md`)."]
        lines.append("")
    c = results.get("check")
    if c:
        lines += [
            "## 4. and 5. Validation throughput (`replay check`), rules and plugin",
            "",
            "Logs from `bench/genlog.py N opt` (`opt -O2 in -o out` per command). Wall and peak RSS from "
            "`/usr/bin/time -v` (replay runs no child here). Plugin: `policies/linux-naming.toml` (the example "
            "naming plugin); cold = empty module cache, cached = compiled module reused.",
            "",
            "| commands | log size | rules: wall | rules: peak RSS | + plugin, cold: wall | + plugin, cold: RSS "
            "| + plugin, cached: wall | + plugin, cached: RSS |",
            "|---|---|---|---|---|---|---|---|",
        ]
        refusals = []
        for r in c["rows"]:
            if "plugin_cold" not in r:
                lines.append(
                    f"| {r['commands']:,} | {r['log_bytes'] / MIB:.1f} MiB | {cell(r['rules']['wall_s'], 's', 1, 2)} "
                    f"(1 run) | {cell(r['rules']['max_rss'], 'MiB', MIB)} | not measured | | | |")
                continue
            marks = {case: (" (refused†)" if r[case].get("refused") else "") for case in ("plugin_cold", "plugin_cached")}
            lines.append(
                f"| {r['commands']:,} | {r['log_bytes'] / MIB:.1f} MiB | {cell(r['rules']['wall_s'], 's', 1, 2)} | "
                f"{cell(r['rules']['max_rss'], 'MiB', MIB)} | {cell(r['plugin_cold']['wall_s'], 's', 1, 2)}"
                f"{marks['plugin_cold']} | "
                f"{cell(r['plugin_cold']['max_rss'], 'MiB', MIB)} | {cell(r['plugin_cached']['wall_s'], 's', 1, 2)}"
                f"{marks['plugin_cached']} | "
                f"{cell(r['plugin_cached']['max_rss'], 'MiB', MIB)} |")
            for case in ("plugin_cold", "plugin_cached"):
                if r[case].get("refused"):
                    refusals.append(f"† {r['commands']:,} commands, {case.replace('_', ' ')}: {r[case]['refused'].strip()}")
        lines.append("")
        if refusals:
            lines += ["The plugin refused these logs (fail closed): one of its budgets in "
                      "`policies/linux-naming.toml` ran out. The times are those of the refusal."] + [""] + \
                     [f"- {line}" for line in refusals] + [""]
        lines += targets_check(c)
    if o and o.get("real"):
        lines += [
            f"## 6. Measurement accuracy ({o['real']['workload']})",
            "",
            "Per command: replay's exact peak (the process's `VmHWM`, read at its exit under ptrace) and its sampled "
            "tree peak (sysinfo, every 5 ms), against `/usr/bin/time -f %M` running the same command directly.",
            "",
            "| id | tool | replay, exact | replay, sampled | time -v | exact / time -v |",
            "|---|---|---|---|---|---|",
        ]
        worst = 0.0
        for a in o["real"]["accuracy"]:
            ours, theirs = a["replay_peak"]["median"], a["time_v"]["median"]
            rel = ours / theirs if ours and theirs else None
            if rel:
                worst = max(worst, abs(rel - 1))
            lines.append(f"| {a['id']} | {a['tool']} | {cell(a['replay_peak'], 'MiB', MIB)} | "
                         f"{cell(a['replay_tree_sampled'], 'MiB', MIB)} | {cell(a['time_v'], 'MiB', MIB)} | "
                         f"{rel:.3f} |" if rel else f"| {a['id']} | {a['tool']} | n/a | n/a | n/a | n/a |")
        lines += ["", f"Largest relative difference, exact against time -v: {100 * worst:.1f}%.", ""]
    sc = results.get("scale")
    if sc:
        lines += [
            "## 7. Scale (synthetic workload)",
            "",
            "`bench/workloads/synth.py N`: a C program of N functions (loops, switches, calls, globals, a "
            "function-pointer table), compiled to bitcode with clang-14 -O0. Per N: `aotc --log` (auto partitions), "
            "`replay check` on that log, then `replay` running it. RSS from `/usr/bin/time -v` (for `replay`, its "
            "own `VmHWM` from the report, and the largest tool's exact peak).",
            "",
            "| N | runs | commands | aotc: wall | aotc: peak RSS | check: wall | check: peak RSS | replay: wall "
            "| replay itself | largest tool |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in sc["rows"]:
            lines.append(
                f"| {r['n']:,} | {r['aotc']['wall_s']['n']} | {r['commands']} | {cell(r['aotc']['wall_s'], 's', 1, 2)} | {cell(r['aotc']['max_rss'], 'MiB', MIB)} | "
                f"{cell(r['check']['wall_s'], 's', 1, 3)} | {cell(r['check']['max_rss'], 'MiB', MIB)} | "
                f"{cell(r['replay']['wall_s'], 's', 1, 2)} | {cell(r['replay_own_peak'], 'MiB', MIB)} | "
                f"{cell(r['largest_tool'], 'MiB', MIB)} |")
        lines += ["", "![scale](scale.svg)", ""]
    fp = results.get("footprint")
    if fp:
        lines += [
            "## 8. replay's own footprint while it runs",
            "",
            "`replay --policy` running N trivial commands (`memtouch --mib=0 --out=o/K.txt`, one declared output "
            "each); replay's own peak RSS is its `VmHWM` from the report (`time -v` also counts the tools). "
            "One run per size: a memory figure (time per command is figure 3's). Target (executor issue): under "
            "10 MiB at 100,000 commands, flat.",
            "",
            "| commands | replay's own peak RSS |",
            "|---|---|",
        ]
        for r in fp["rows"]:
            lines.append(f"| {r['commands']:,} | {r['replay_peak_rss'] / MIB:.1f} MiB |")
        big = [r for r in fp["rows"] if r["commands"] == 100_000]
        if big:
            rss = big[0]["replay_peak_rss"] / MIB
            lines += ["", f"Target under 10 MiB at 100,000 commands: {'meets' if rss < 10 else '**misses**'} it "
                          f"({rss:.1f} MiB)."]
        lines.append("")
    ca = results.get("cache")
    if ca:
        lines += render_cache(ca)
    pa = results.get("parallel")
    if pa:
        lines += render_parallel(pa)
    rb = results.get("realbuild")
    if rb:
        lines += render_realbuild(rb)
    rm = results.get("remote")
    if rm:
        lines += render_remote(rm)
    rx = results.get("remote_exec")
    if rx:
        lines += render_remote_exec(rx)
    commits, cpus = results.get("commits", {}), results.get("cpus", {})
    if len(set(commits.values())) > 1 or len(set(cpus.values())) > 1:
        lines += ["## Commits", "", "Figures rerun with `--merge` were measured at different commits (and, where the",
                  "machine's CPU changed between runs, on different CPUs: compare times only within one figure):", ""]
        lines += [f"- {figure}: `{commit}`" + (f" ({cpus[figure]})" if figure in cpus else "")
                  for figure, commit in sorted(commits.items())] + [""]
    return "\n".join(lines) + "\n"


def render_cache(ca: dict) -> list:
    """Figure 9's section: the table, what was run, and the issue's
    targets, met or missed."""
    s, r = ca["summary"], ca["ratios"]
    rows = [
        ("cold, empty cache (`--cache DIR`)", "cold_cache", None),
        ("cold, `--no-cache`", "cold_no_cache", "cold_cache_over_no_cache"),
        ("no-change rerun, warm cache", "rerun", "rerun_over_cold"),
        ("one-function edit, warm cache", "edit", "edit_over_cold"),
    ]
    lines = [
        f"## 9. Action cache ({ca['workload']}, `--partitions auto`)",
        "",
        f"`aotc --log --partitions auto` writes SQLite's log ({ca['commands']} commands) once, and once more for "
        f"the one-function edit ({ca['edit']}: its bitcode differs from the original's in one line). Each run "
        "starts from aotc's bitcode alone (no outputs, no journal) and runs `replay --policy policies/linux.toml "
        "--report ...`: (a) cold, into a fresh empty `--cache DIR`; (b) cold with `--no-cache` (a and b "
        "interleaved, alternating which goes first); (c) the same log again with the warm DIR; (d) the edited "
        "log, same root, warm DIR. Wall from the bench's clock around `replay`; hits and misses from the "
        "report's totals. Every program is verified (`sqlite.sh verify`), and the value "
        "`sqlite3_libversion_number()` returns is read from its machine code: the original's in a, b and c, "
        "the edit's in d.",
        "",
        "| run | wall | hits | misses | stored | ratio (per run) |",
        "|---|---|---|---|---|---|",
    ]
    ratio_name = {"cold_cache_over_no_cache": "b: a / b", "rerun_over_cold": "c / a", "edit_over_cold": "d / a"}
    for label, side, ratio in rows:
        x = s[side]
        rc = f"{ratio_name[ratio]} = **{r[ratio]['median']:.3f}** ({r[ratio]['min']:.3f}–{r[ratio]['max']:.3f})" \
            if ratio else ""
        lines.append(f"| {label} | {cell(x['wall_s'], 's', 1, 2)} | {x['hits']['median']:.0f} | "
                     f"{x['misses']['median']:.0f} | {x['stored']['median']:.0f} | {rc} |")
    reran = ca["edit_reran"]
    lines += [
        "",
        f"- Rerun in (d): {'; '.join(', '.join(r) for r in reran) or 'nothing'}"
        + (" (the same in every run)." if len(reran) == 1 else " (differs between runs)."),
        f"- The edit changed the bitcode of: {', '.join(f'`{b}`' for b in ca['edit_changed_bitcode'])}.",
        f"- Programs of a, b and c byte-identical: {'yes' if ca['same_program'] else '**no**'}.",
        f"- Against `--no-cache` (b): rerun {r['rerun_over_no_cache']['median']:.3f}, "
        f"edit {r['edit_over_no_cache']['median']:.3f}.",
    ]
    if "cold_cache_over_no_cache_cpu" in r:
        lines.append(
            f"- CPU time (replay and its tools, `time -v`), cold: with the cache {cell(s['cold_cache']['cpu_s'], 's', 1, 2)}, "
            f"`--no-cache` {cell(s['cold_no_cache']['cpu_s'], 's', 1, 2)}; a / b per run "
            f"{cell(r['cold_cache_over_no_cache_cpu'], '', 1, 3)} (not the target's measure, which is wall; "
            "a figure less moved by other work on the machine).")
    lines += [
        f"- The cache after a cold run: {cell(ca['cache_bytes'], 'MiB', MIB)} "
        f"(`replay cache stats`: {ca['cache_stats'].splitlines()[0].rpartition('`: ')[2] if ca['cache_stats'] else 'n/a'}).",
        f"- replay's own wall (the report's `wall_ms`), rerun: {cell(s['rerun']['replay_wall_ms'], 'ms', 1, 0)}; "
        f"edit: {cell(s['edit']['replay_wall_ms'], 'ms', 1, 0)}; tool time the rerun's hits saved "
        f"(`saved_ms`): {cell(s['rerun']['saved_ms'], 's', 1000)}.",
        f"- 1-minute load average before and after the figure: {ca['loadavg_1m'][0]:.1f}, "
        f"{ca['loadavg_1m'][1]:.1f} ({ca['cores']} cores: a load above that means other work shared the machine).",
        "",
    ]
    b = ca.get("hit_breakdown")
    if b:
        rerun = s["rerun"]
        largest = ", ".join(f"`{Path(p).name}` {n / MIB:.0f} MiB" for p, n in b["read_set_largest"])
        lines += [
            "Where the no-change rerun's time goes (all hits, no tool runs):",
            "",
            f"- `replay` itself: {cell(rerun['wall_s'], 's', 1, 2)} wall, of which {cell(rerun['cpu_s'], 's', 1, 2)} "
            "CPU (user + system, `time -v`).",
        ]
        sp = b.get("split")
        if sp:
            lines.append(
                f"- The same rerun again, its wall split by the kernel's `/proc/PID/schedstat` (read every ms): "
                f"{cell(sp['wall_s'], 's', 1, 2)} = on a CPU {cell(sp['cpu_s'], 's', 1, 2)} + runnable, waiting for a "
                f"CPU {cell(sp['runqueue_s'], 's', 1, 2)} (other work on this shared machine) + asleep "
                f"{cell(sp['other_s'], 's', 1, 2)} (the disk: a journal `fdatasync` per command, staging "
                "directories made and removed).")
        lines += [
            f"- The check pass alone (`replay check` on the same log): {cell(b['check_wall_s'], 's', 1, 3)}.",
            f"- The entries' read sets name {b['read_set_files']} distinct files, {b['read_set_bytes'] / MIB:.0f} MiB "
            f"({largest}); each replay process hashes each once (the digest memo lives in memory only): "
            f"sha256 over them takes {cell(b['read_set_hash_s'], 's', 1, 3)} of CPU here (Python's hashlib, warm page "
            "cache; replay's own sha256 may be faster).",
        ]
        if b.get("perf_sha256_pct") is not None:
            lines.append(f"- A CPU profile of one rerun (`perf record`): {b['perf_sha256_pct']:.0f}% of replay's "
                         f"samples in sha256 itself, {b['perf_read_pct'] or 0:.0f}% in `read` (with what it calls), "
                         "nearly all of it the hashing's.")
        if b.get("strace_top"):
            top = ", ".join(f"`{c['syscall']}` {1000 * c['seconds']:.0f} ms ({c['calls']})" for c in b["strace_top"])
            lines.append(f"- One rerun under `strace -f -c -w` (slower than without), time in syscalls "
                         f"{1000 * b['strace_total_s']:.0f} ms: {top}.")
        lines.append("")
    lines += [
        "Targets (issue 16):",
        "",
    ]
    for name, ratio, limit, say in (
            ("no-change rerun at most 5% of the cold wall", "rerun_over_cold", 0.05, "of it"),
            ("one-function edit at most 25% of the cold wall", "edit_over_cold", 0.25, "of it"),
            ("cold with the cache at most 3% slower than `--no-cache`", "cold_cache_over_no_cache", 1.03, "")):
        med = r[ratio]["median"]
        verdict = "meets" if med <= limit else "**misses**"
        amount = f"{100 * med:.1f}% {say}" if say else f"{100 * (med - 1):+.1f}%"
        lines.append(f"- {name}: {verdict} it ({amount}).")
    return lines + [""]


def render_parallel(pa: dict) -> list:
    """Figure 10's section: the table, what was run, and issue 17's
    target, met or missed."""
    s, r, raw = pa["summary"], pa["ratios"], pa["raw"]
    kinds = ", ".join(f"`{k}` {v / MIB:.1f} MiB" for k, v in sorted(pa["per_kind_peak"].items()))
    predict = " ".join(f"`--predict {p}`" for p in pa["predict"])

    def budget(side: str) -> str:
        b = s[side]["memory_budget"]
        return "none (one at a time)" if b["median"] is None else f"{b['median'] / MIB:.0f} MiB"

    def ratio(name: str) -> str:
        x = r[name]
        return f"**{x['median']:.2f}** ({x['min']:.2f}–{x['max']:.2f})"

    rows = [
        ("(a) `-j 1`", "j1", None),
        (f"(b) `-j 2 --memory-budget {pa['budgets']['generous']}`", "j2_generous", "j2_generous_over_j1"),
        (f"(c) `-j 2 --memory-budget {pa['budgets']['tight']}`", "j2_tight", "j2_tight_over_j1"),
    ]
    lines = [
        f"## 10. Parallel runs ({pa['workload']}, `--partitions auto`)",
        "",
        f"`aotc --log --partitions auto` writes SQLite's log ({pa['commands']} commands: an `opt` and an `llc` per "
        "partition, then the link) once. Every run starts from aotc's bitcode alone and runs "
        "`replay --no-cache --policy policies/linux.toml --report ...` (every tool really runs). A first `-j 1` "
        f"run, not counted, measured each tool kind's largest peak (its largest process, or its sampled tree capped "
        f"at the sum of its processes' peaks): {kinds}; every "
        f"parallel run is given them as {predict}, so a cold run can be parallel. Then, interleaved (the order "
        "rotated each run): (a) `-j 1`; (b) `-j 2` with a generous budget; (c) `-j 2` with a budget just above "
        f"the largest tool's peak ({pa['largest_peak'] / MIB:.1f} MiB x 1.1), so two large tools cannot run at "
        "once; (d) below. Wall from the bench's clock around `replay`; `peak_sum_rss` (the largest sum of the "
        "running tools' sampled tree RSS, sampled every 10 ms), the budget and each command's start and end from "
        "the report. Every program is verified (`sqlite.sh verify`).",
        "",
        "| run | wall | wall / (a), per run | `peak_sum_rss` | budget | commands that overlapped another | "
        "time with 2 running | most admitted at once |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, side, name in rows:
        x = s[side]
        lines.append(
            f"| {label} | {cell(x['wall_s'], 's', 1, 2)} | {ratio(name) if name else ''} | "
            f"{cell(x['peak_sum_rss'], 'MiB', MIB)} | {budget(side)} | {cell(x['overlapped'], '', 1, 0)} of "
            f"{pa['commands']} | {cell(x['two_or_more_s'], 's', 1, 2)} | "
            f"{cell(x['max_admitted_sum'], 'MiB', MIB) if side != 'j1' else ''} |")
    d, e = s["drive_j2"], s["exec"]
    procs: dict = {}
    for x in raw["j1"]:
        for name, b in x["link_processes"].items():
            procs[name] = max(procs.get(name, 0), b)
    link_procs = ", ".join(f"`{n}` {b / MIB:.1f} MiB" for n, b in procs.items())
    lines += [
        "",
        f"(d) `replay drive -j 2 --no-cache --memory-budget {pa['budgets']['generous']} {' '.join('--predict ' + p for p in pa['predict'])} "
        "-- aotc ...` against `aotc --exec` (which runs its tools one at a time), interleaved with the above, "
        "each from a fresh root; wall from the bench's clock, the pipeline's peak (every process at one instant) "
        "from `treepeak` as in figure 1:",
        "",
        "| pipeline | wall | peak (all processes) | `aotc` alone | tools at the peak instant | `peak_sum_rss` (replay) |",
        "|---|---|---|---|---|---|",
        f"| `replay drive -j 2 -- aotc` | {cell(d['wall_s'], 's', 1, 2)} | {cell(d['pipeline_peak'], 'MiB', MIB)} | "
        f"{cell(d['compiler_peak'], 'MiB', MIB)} | {cell(d['tools_at_peak'], 'MiB', MIB)} | "
        f"{cell(d['peak_sum_rss'], 'MiB', MIB)} |",
        f"| `aotc --exec` | {cell(e['wall_s'], 's', 1, 2)} | {cell(e['pipeline_peak'], 'MiB', MIB)} | "
        f"{cell(e['compiler_peak'], 'MiB', MIB)} | {cell(e['tools_at_peak'], 'MiB', MIB)} | |",
        "",
        f"- drive -j 2 / exec, per run: wall {ratio('drive_over_exec_wall')}, peak {ratio('drive_over_exec_peak')}.",
        f"- In drive -j 2, {cell(d['overlapped'], '', 1, 0)} of {pa['commands']} commands overlapped another, "
        f"2 running for {cell(d['two_or_more_s'], 's', 1, 2)}.",
        f"- Tools stopped for the budget (a prediction too small, rerun alone): "
        + ", ".join(f"{side} {sum(x['stopped_for_budget'] for x in raw[side])}"
                    for side in ("j2_generous", "j2_tight", "drive_j2")) + ".",
        "- The link's sampled tree peak (clang and the ld it runs), over every replay run: "
        + cell(summary([x["link_tree_sampled"] for side in ("j1", "j2_generous", "j2_tight", "drive_j2")
                        for x in raw[side]]), "MiB", MIB)
        + f", against its processes' own peaks: {link_procs} (a sample taken while clang's spawned child still "
        "shares clang's memory, before it execs ld, counts that memory twice; "
        "which is why the calibration caps each tool's tree peak at the sum of its processes' own).",
        f"- Programs of (a), (b), (c) and drive byte-identical: {'yes' if pa['same_program'] else '**no**'}; "
        f"the same as `aotc --exec`'s: {'yes' if pa['same_as_exec'] else 'no'}.",
        f"- CPU time (replay and its tools, `time -v`): (a) {cell(s['j1']['cpu_s'], 's', 1, 2)}, "
        f"(b) {cell(s['j2_generous']['cpu_s'], 's', 1, 2)}, (c) {cell(s['j2_tight']['cpu_s'], 's', 1, 2)}.",
        f"- 1-minute load average before and after the figure: {pa['loadavg_1m'][0]:.1f}, "
        f"{pa['loadavg_1m'][1]:.1f} ({pa['cores']} cores: a load above that means other work shared the machine; "
        "a parallel run needs both cores free to gain).",
        "",
        "Targets (issue 17):",
        "",
    ]
    med = r["j2_generous_over_j1"]["median"]
    lines.append(f"- `-j 2` (generous budget) at most 0.6x the wall of `-j 1`: {'meets' if med <= 0.6 else '**misses**'} "
                 f"it ({med:.2f}; per run {r['j2_generous_over_j1']['min']:.2f}–{r['j2_generous_over_j1']['max']:.2f}).")
    for side, label in (("j2_tight", "(c), budget just above the largest tool"), ("j2_generous", "(b)"),
                        ("drive_j2", "(d), drive")):
        n, worst = pa["over_budget_runs"][side], pa["most_over_budget"][side]
        lines.append(f"- `peak_sum_rss` never above the budget, {label}: "
                     + ("meets it (in every run; closest " if n == 0 else f"**misses** it ({n} of {len(raw[side])} runs; worst ")
                     + f"{abs(worst) / MIB:.1f} MiB {'under' if worst <= 0 else 'over'})." if worst is not None
                     else f"- {label}: no budget reported.")
        for i, x in enumerate(raw[side]):
            if x.get("memory_budget") and x["peak_sum_rss"] > x["memory_budget"]:
                lines.append(f"  - run {i + 1}: `peak_sum_rss` {x['peak_sum_rss'] / MIB:.1f} MiB; the link's own tree "
                             f"sample {x['link_tree_sampled'] / MIB:.1f} MiB"
                             + (" (above the budget with the link running alone)."
                                if x["link_tree_sampled"] > x["memory_budget"] else "."))
    return lines + [""]


def targets_check(c: dict) -> list:
    """Says plainly which rows miss the targets of the other issues."""
    out = []
    for r in c["rows"]:
        if r["commands"] == 100_000:
            wall, rss = r["rules"]["wall_s"]["median"], r["rules"]["max_rss"]["median"] / MIB
            verdict = "meets" if wall < 0.5 and rss < 32 else "**misses**"
            out.append(f"Target for 100k commands, under 0.5 s and 32 MiB: {verdict} it "
                       f"({wall:.2f} s, {rss:.1f} MiB).")
    # Issue 20: flat at any size.
    for r in c["rows"]:
        n = r["commands"]
        if n >= 1_000_000:
            wall, rss = r["rules"]["wall_s"]["median"], r["rules"]["max_rss"]["median"] / MIB
            per_million = wall / (n / 1_000_000)
            verdict = "meets" if rss <= 32 and per_million <= 5 else "**misses**"
            out.append(f"Target for {n:,} commands without a plugin, at most 32 MiB and 5 s a million: {verdict} "
                       f"it ({rss:.1f} MiB, {per_million:.2f} s a million).")
        if n == 1_000_000 and "plugin_cached" in r:
            for case in ("plugin_cold", "plugin_cached"):
                rss = r[case]["max_rss"]["median"] / MIB
                allowed = not r[case].get("refused")
                verdict = "meets" if allowed and rss <= 48 else "**misses**"
                out.append(f"Target for 1,000,000 commands with the example plugin ({case.replace('_', ', ')}), "
                           f"allowed and at most 48 MiB: {verdict} it ({'allowed' if allowed else 'refused'}, "
                           f"{rss:.1f} MiB).")
    flat = [r["rules"]["max_rss"]["median"] / MIB for r in c["rows"]]
    if flat:
        out.append(f"Peak RSS of `replay check` (rules) from the smallest to the largest log: "
                   f"{flat[0]:.1f} → {flat[-1]:.1f} MiB.")
    for r in c["rows"]:
        if "plugin_cached" in r and r["plugin_cached"]["max_rss"]["median"] > 2 * r["rules"]["max_rss"]["median"]:
            out.append(f"With a plugin, `replay check` holds {r['plugin_cached']['max_rss']['median'] / MIB:.0f} MiB "
                       f"at {r['commands']:,} commands, over twice the rules' own.")
            break
    return out + [""]


def plot_scale(sc: dict) -> None:
    rows = sc["rows"]
    data = {
        "title": "replay and aotc against program size (synthetic workload)",
        "x_label": "functions (N)",
        "n": [r["n"] for r in rows],
        "panels": [
            {"title": "wall time", "y_label": "seconds", "series": [
                {"name": "aotc --log", "values": [r["aotc"]["wall_s"]["median"] for r in rows]},
                {"name": "replay check", "values": [r["check"]["wall_s"]["median"] for r in rows]},
                {"name": "replay (run)", "values": [r["replay"]["wall_s"]["median"] for r in rows]},
            ]},
            {"title": "peak RSS", "y_label": "MiB", "series": [
                {"name": "aotc --log", "values": [r["aotc"]["max_rss"]["median"] / MIB for r in rows]},
                {"name": "replay check", "values": [r["check"]["max_rss"]["median"] / MIB for r in rows]},
                {"name": "replay itself (run)", "values": [r["replay_own_peak"]["median"] / MIB for r in rows]},
                {"name": "largest tool", "values": [r["largest_tool"]["median"] / MIB for r in rows]},
            ]},
        ],
    }
    path = WORK / "scale.json"
    path.write_text(json.dumps(data, indent=1))
    run([TOOLS / "plot", "--input", path, "--out", BENCH / "scale.svg"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per side of each comparison (default 5)")
    parser.add_argument("--large-runs", type=int, default=3,
                        help="runs of the scale figure at N=50,000 (default 3: each takes minutes)")
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes (no 1M-command log, no N=50000), for trying the bench out")
    parser.add_argument("--only", default=",".join(FIGURES), help=f"a comma-separated subset of {FIGURES}")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--render", action="store_true",
                        help="rewrite RESULTS.md from bench/results.json without running anything")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other figures of bench/results.json (each says the commit it was "
                             "measured at) and rerun only those of --only")
    args = parser.parse_args()
    only = args.only.split(",")
    unknown = set(only) - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s) {sorted(unknown)}; choose from {FIGURES}")
    if args.render:
        results = json.loads((BENCH / "results.json").read_text())
        args.runs = results["runs"]
        args.out.write_text(render(results, args))
        log(f"wrote {args.out} from {BENCH / 'results.json'}")
        return
    results: dict = {"machine": machine(), "runs": args.runs, "commits": {}, "cpus": {}, "argv": sys.argv[1:]}
    previous = BENCH / "results.json"
    if args.merge and previous.exists():
        kept = json.loads(previous.read_text())
        for figure in ("pipeline", "overhead", "check", "scale", "footprint", "cache", "parallel", "realbuild", "remote",
                       "remote_exec"):
            if figure in kept and figure not in only:
                results[figure] = kept[figure]
                results["commits"][figure] = kept.get("commits", {}).get(figure, kept["machine"]["commit"])
                results["cpus"][figure] = kept.get("cpus", {}).get(figure, kept["machine"]["cpu"])
    for figure in only:
        results["commits"][figure] = results["machine"]["commit"]
        results["cpus"][figure] = results["machine"]["cpu"]
    out = WORK / "runs"
    if {"pipeline", "overhead", "accuracy", "cache", "parallel", "remote", "remote_exec"} & set(only):
        sqlite = sqlite_workload()
    if "pipeline" in only:
        results["pipeline"] = fig_pipeline(sqlite, args.runs, fresh(out / "pipeline"))
    if "overhead" in only or "accuracy" in only:
        results["overhead"] = {
            "real": fig_overhead_log(sqlite, args.runs, fresh(out / "overhead-real")),
            "small": fig_overhead_small(1000, args.runs, out / "overhead-small"),
            "small_opt": fig_overhead_small(1000, args.runs, out / "overhead-small-opt", "opt-O0"),
        }
    if "check" in only:
        sizes = [1000, 10_000, 100_000] + ([] if args.quick else [1_000_000])
        results["check"] = fig_check(sizes, args.runs, out / "check", [] if args.quick else [10_000_000])
    if "scale" in only:
        sizes = [1000, 10_000] + ([] if args.quick else [50_000])
        results["scale"] = fig_scale(sizes, args.runs, fresh(out / "scale"), args.large_runs)
        plot_scale(results["scale"])
    if "footprint" in only:
        sizes = [1000, 10_000] + ([] if args.quick else [100_000])
        results["footprint"] = fig_footprint(sizes, out / "footprint")
    if "cache" in only:
        results["cache"] = fig_cache(sqlite, args.runs, fresh(out / "cache"))
    if "parallel" in only:
        results["parallel"] = fig_parallel(sqlite, args.runs, fresh(out / "parallel"))
    if "realbuild" in only:
        results["realbuild"] = fig_realbuild(args.runs, fresh(out / "realbuild"))
    if "remote" in only:
        results["remote"] = fig_remote(sqlite, args.runs, fresh(out / "remote"))
    if "remote_exec" in only:
        results["remote_exec"] = fig_remote_exec(sqlite, args.runs, fresh(out / "remote_exec"))
    (BENCH / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    args.out.write_text(render(results, args))
    log(f"wrote {args.out} and {BENCH / 'results.json'}")


if __name__ == "__main__":
    main()
