"""Eager vs --compile on the same inputs (same process): compile time (first generation of each
mode), then ms per pass and tokens/s on the rest. Usage: python benchmarks/compile_speed.py N_INPUTS OUT.json (docs/bench/issue14/compile_cpu.json: 8)"""
import json, sys, time, torch
torch.set_num_threads(1)
from backend.decoding.pipeline import Generator
from backend.options import GenerateOptions
from backend.evaluation import procedural_cases
from backend.inputs import from_mesh
n = int(sys.argv[1])
clouds = [from_mesh(c.mesh, seed=0) for c in procedural_cases(n + 1)]
gens = {"eager": Generator.load("models/default", "cpu")}
t0 = time.perf_counter(); gens["compiled"] = Generator.load("models/default", "cpu", compile=True); load = time.perf_counter() - t0
out = {"compile_load_s": load}
def run(g, cloud, mode):
    s = time.perf_counter()
    *_, done = g.stream(cloud.points, cloud.normals, GenerateOptions(mode=mode, max_faces=150))
    return done.stats, time.perf_counter() - s
for name, g in gens.items():
    for mode in ("ar", "speculative"):
        stats, secs = run(g, clouds[0], mode)
        out[f"{name}/{mode}/first_generation_s"] = secs
tot = {}
for cloud in clouds[1:]:
    for name, g in gens.items():
        for mode in ("ar", "speculative"):
            stats, secs = run(g, cloud, mode)
            t = tot.setdefault(f"{name}/{mode}", {"tokens": 0, "passes": 0, "seconds": 0.0, "token_lists": []})
            t["tokens"] += stats["tokens"]; t["passes"] += stats["forward_passes"]; t["seconds"] += stats["seconds"]
for k, t in tot.items():
    out[k] = {"tokens": t["tokens"], "passes": t["passes"], "ms_per_pass": 1000 * t["seconds"] / t["passes"],
              "tokens_per_second": t["tokens"] / t["seconds"], "scr": t["tokens"] / t["passes"]}
json.dump(out, open(sys.argv[2], "w"), indent=1)
print(json.dumps(out, indent=1))
