#!/usr/bin/env python3
"""Writes a replay log of N commands to stdout, for the benches.

  genlog.py N opt       opt -O2 gen.aotc/pK.bc -o gen.aotc/pK.opt.bc (linux.toml allows them)
  genlog.py N memtouch  memtouch --mib=0 (a trivial tool, for the run overhead)
  genlog.py N memtouch-out  the same, each writing one declared output o/K.txt
  genlog.py N opt-O0    opt -O0 one.ll -o o/K.bc (a one-function module; linux.toml allows them)
"""
import json
import sys

n, kind = int(sys.argv[1]), sys.argv[2]
out = sys.stdout
out.write('{"format":"replay-log","version":1,"producer":{"name":"genlog","version":"0"},'
          '"platform":{"os":"linux","arch":"x86_64"},"commands":[\n')
for i in range(1, n + 1):
    if kind == "opt":
        src, dst = f"gen.aotc/p{i}.bc", f"gen.aotc/p{i}.opt.bc"
        cmd = {"id": i, "tool": "opt", "program": "opt", "args": ["-O2", src, "-o", dst],
               "cwd": ".", "env": {}, "inputs": [src], "outputs": [dst]}
    elif kind == "opt-O0":
        dst = f"o/{i}.bc"
        cmd = {"id": i, "tool": "opt", "program": "opt", "args": ["-O0", "one.ll", "-o", dst],
               "cwd": ".", "env": {}, "inputs": ["one.ll"], "outputs": [dst]}
    elif kind == "memtouch-out":
        out_file = f"o/{i}.txt"
        cmd = {"id": i, "tool": "memtouch", "program": "memtouch", "args": ["--mib=0", f"--out={out_file}"],
               "cwd": ".", "env": {}, "inputs": [], "outputs": [out_file]}
    else:
        cmd = {"id": i, "tool": "memtouch", "program": "memtouch", "args": ["--mib=0"],
               "cwd": ".", "env": {}, "inputs": [], "outputs": []}
    out.write(("," if i > 1 else "") + json.dumps(cmd, separators=(",", ":")) + "\n")
out.write("]}\n")
