#!/usr/bin/env python3
"""macula-gitops vs Debian's docker-compose on the same 20-service busybox stack, in one run.

Measures: cold converge, no-op reconcile, drift repair (container removed by hand), idle RSS of
`run`. Cold converge has a third column, the engine's floor: the same network and the same 20
containers (image, command, env, restart policy, healthcheck, service alias) created by 20
parallel `docker run -d`. Each run does all three cold from nothing, rotating who goes first.
Drift repair is timed on the engine's own clock (its events, through `docker_api`, not the CLI
whose start-up would be most of it): from the removal sent until a new container of the service
starts, beside the same repair done by hand on the engine (that removal, then a create and start
of the same container), both in every round. Prints a markdown table with ratios. Everything it
creates is named bench<pid>* and removed at the end. `CARGO_TARGET_DIR` is honoured.
Usage: python3 tests/bench/compose.py [--services 20] [--runs 5] [--no-cold] [--trace FILE]
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time

import docker_api as api

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "release/macula-gitops")
IMAGE = "macula-test-busybox:1"


def sh(*args, check=True, **kw):
    return subprocess.run(args, check=check, capture_output=True, text=True, **kw)


def timed(*args, **kw):
    t = time.perf_counter()
    sh(*args, **kw)
    return time.perf_counter() - t


def ensure_image():
    if sh("docker", "image", "inspect", IMAGE, check=False).returncode == 0:
        return
    with tempfile.TemporaryDirectory() as d:
        shutil.copy("/bin/busybox", d)
        open(os.path.join(d, "Dockerfile"), "w").write(
            'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n')
        sh("docker", "build", "-q", "-t", IMAGE, d)


def desired_state(work, stack):
    """A desired-state directory under `work` whose default host runs the one stack `stack`;
    returns it and the path of that stack's compose file (not written yet)."""
    ds = os.path.join(work, "desired-state")
    os.makedirs(os.path.join(ds, "stacks", stack))
    with open(os.path.join(ds, "hosts.yaml"), "w") as f:
        f.write(f"hosts:\n  default: {{stacks: [{stack}]}}\n")
    return ds, os.path.join(ds, "stacks", stack, "compose.yaml")


def compose_file(n):
    out = ["services:"]
    for i in range(n):
        out += [f"  svc{i}:", f"    image: {IMAGE}", "    command: httpd -f -p 8080 -h /bin",
                "    environment: {ROLE: bench}", "    restart: unless-stopped",
                "    healthcheck: {test: [CMD, wget, -q, -O, /dev/null, 'http://127.0.0.1:8080/busybox'], interval: 2s}"]
    return "\n".join(out) + "\n"


HEALTH = "wget -q -O /dev/null http://127.0.0.1:8080/busybox"


def floor_body(tag, net, i):
    """What `floor` runs for service i, as an Engine API create body (the drift floor)."""
    return {"Image": IMAGE, "Cmd": ["httpd", "-f", "-p", "8080", "-h", "/bin"], "Env": ["ROLE=bench"],
            "Labels": {"bench.floor": tag},
            "Healthcheck": {"Test": ["CMD-SHELL", HEALTH], "Interval": 2_000_000_000},
            "HostConfig": {"NetworkMode": net, "RestartPolicy": {"Name": "unless-stopped"}},
            "NetworkingConfig": {"EndpointsConfig": {net: {"Aliases": [f"svc{i}"]}}}}


def floor(tag, n):
    """The engine's own speed: network + n containers by parallel `docker run -d`."""
    net = f"{tag}floor_default"
    t = time.perf_counter()
    sh("docker", "network", "create", "--label", f"bench.floor={tag}", net)
    procs = [subprocess.Popen(
        ["docker", "run", "-d", "--name", f"{tag}floor-svc{i}-1", "--label", f"bench.floor={tag}",
         "--network", net, "--network-alias", f"svc{i}", "--restart", "unless-stopped",
         "-e", "ROLE=bench", "--health-cmd", HEALTH, "--health-interval", "2s",
         IMAGE, "httpd", "-f", "-p", "8080", "-h", "/bin"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(n)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"docker run failed: {p.stderr.read()}")
    return time.perf_counter() - t


def cleanup(tag, host):
    for flt in (f"label=io.macula.gitops.host={host}", f"label=com.docker.compose.project={tag}", f"label=bench.floor={tag}"):
        ids = sh("docker", "ps", "-aq", "--filter", flt).stdout.split()
        if ids:
            sh("docker", "rm", "-f", *ids, check=False)
    for flt in (f"label=io.macula.gitops.host={host}", f"label=com.docker.compose.project={tag}", f"label=bench.floor={tag}"):
        ids = sh("docker", "network", "ls", "-q", "--filter", flt).stdout.split()
        if ids:
            sh("docker", "network", "rm", *ids, check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--repairs", type=int, default=10)
    ap.add_argument("--no-drift", action="store_true", help="cold and no-op only")
    ap.add_argument("--no-cold", action="store_true", help="drift only")
    ap.add_argument("--trace", help="write the daemon's log here (drift part)")
    ap.add_argument("--trace-filter", default="warn,macula_gitops=debug")
    a = ap.parse_args()
    if not os.path.exists(BIN):
        sh("cargo", "build", "--release", "-q", cwd=ROOT)
    ensure_image()
    tag = f"bench{os.getpid()}"
    host = f"{tag}-host"
    work = tempfile.mkdtemp()
    ds, cf = desired_state(work, tag)
    open(cf, "w").write(compose_file(a.services))
    state = os.path.join(work, "state")
    mg = [BIN, "--desired-state", ds, "--host", host, "--state-dir", state]
    dc = ["docker-compose", "-p", tag, "-f", cf]
    env = dict(os.environ, MACULA_GITOPS_LOG="warn")
    res = {k: ([], []) for k in ("cold", "noop")}
    floors = []

    def agent():
        res["cold"][0].append(timed(*mg, "apply", env=env))
        res["noop"][0].extend(timed(*mg, "apply", env=env) for _ in range(3))

    def compose():
        res["cold"][1].append(timed(*dc, "up", "-d"))
        res["noop"][1].extend(timed(*dc, "up", "-d") for _ in range(3))

    order = [agent, compose, lambda: floors.append(floor(tag, a.services))]
    try:
        for r in range(0 if a.no_cold else a.runs):
            # Rotate who goes first so none always gets a warm (or a busy) engine; each cold run
            # starts from nothing (the others' containers and networks removed).
            for who in order[r % 3:] + order[:r % 3]:
                cleanup(tag, host)
                who()
        cleanup(tag, host)
        repairs, removals, named_at, runs, rss = [], [], [], [], float("nan")
        drift = (repairs, removals, named_at, runs)
        if a.no_drift:
            return report(a, res, floors, drift, rss)
        # Drift: remove a container by hand (Engine API, as `docker rm -f` does), time until a
        # new container of that service runs. Beside it, the engine's floor for the same repair
        # done by hand: that removal (it answers once the container is gone) plus a create and
        # start of the same container. The stack is converged first so the daemon's first pass
        # changes nothing.
        sh(*mg, "apply", env=env)
        denv = dict(env, MACULA_GITOPS_LOG=a.trace_filter) if a.trace else env
        log = open(a.trace, "w") if a.trace else subprocess.DEVNULL
        daemon = subprocess.Popen(mg + ["run", "--interval", "1h", "--listen", "127.0.0.1:0"], env=denv, stderr=log)
        events = api.Events({"type": ["container"], "event": ["start", "rename"]})
        net = f"{tag}_default"
        try:
            time.sleep(3)
            for i in range(a.repairs):
                name = f"{tag}-svc{i}-1"
                old = api.inspect(name)["Id"]
                events.mark()
                t0 = time.time_ns()
                api.remove(name)
                gone = time.time_ns()
                new = events.wait(lambda e: e["Action"] == "start" and e["id"] != old
                                  and api.attr(e, "io.macula.gitops.host") == host
                                  and api.attr(e, "com.docker.compose.service") == f"svc{i}")
                named = new if api.attr(new, "name") == name else events.wait(
                    lambda e: e["Action"] == "rename" and e["id"] == new["id"])
                repairs.append((new["timeNano"] - t0) / 1e9)
                removals.append((gone - t0) / 1e9)
                named_at.append((named["timeNano"] - t0) / 1e9)
                time.sleep(0.5)
                f0 = time.perf_counter()
                api.run(f"{tag}floor-drift", floor_body(tag, net, i))
                runs.append(time.perf_counter() - f0)
                api.remove(f"{tag}floor-drift")
                time.sleep(0.5)
            time.sleep(3)
            rss = int([l for l in open(f"/proc/{daemon.pid}/status") if l.startswith("VmRSS")][0].split()[1]) / 1024
        finally:
            events.close()
            daemon.terminate()
            daemon.wait()
    finally:
        cleanup(tag, host)
        shutil.rmtree(work, ignore_errors=True)
    report(a, res, floors, drift, rss)


def report(a, res, floors, drift, rss):
    repairs, removals, named_at, runs = drift
    med = statistics.median
    ms = lambda xs: " ".join(f"{x*1000:.0f}" for x in xs)
    print(f"| measure ({a.services} services, median) | macula-gitops | docker-compose 1.29 | engine floor | agent / compose | agent / floor | goal |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    if res["noop"][0]:
        m, c = med(res["noop"][0]), med(res["noop"][1])
        print(f"| no-op reconcile (`apply` vs `up -d`, 3 per run) | {m*1000:.0f} ms | {c*1000:.0f} ms | — | {m/c:.2f}× | — | ≤ 0.25× compose |")
        m, c, f = med(res["cold"][0]), med(res["cold"][1]), med(floors)
        print(f"| cold converge (`apply` / `up -d` / {a.services} parallel `docker run -d`) | {m*1000:.0f} ms | {c*1000:.0f} ms | {f*1000:.0f} ms | {m/c:.2f}× | {m/f:.2f}× | ≤ 0.7× compose, ≤ 1.15× floor |")
    if repairs:
        floor = [r + c for r, c in zip(removals, runs)]
        after = [p - r for p, r in zip(repairs, removals)]
        n = len(repairs)
        print(f"| drift repair: `rm -f` sent → new container running (median / max of {n}) | {med(repairs)*1000:.0f} / {max(repairs)*1000:.0f} ms | never (no watcher) | {med(floor)*1000:.0f} ms (`rm -f`, then create + start) | — | {med(repairs)/med(floor):.2f}× | ≤ 0.5 s median |")
        print(f"| … the engine's `rm -f` alone (until it answers: container gone) | — | — | {med(removals)*1000:.0f} / {max(removals)*1000:.0f} ms | — | — | — |")
        print(f"| … running, counted from the container gone | {med(after)*1000:.0f} / {max(after)*1000:.0f} ms | — | {med(runs)*1000:.0f} / {max(runs)*1000:.0f} ms (create + start) | — | {med(after)/med(runs):.2f}× | ≤ 0.5 s median |")
        print(f"| … under its own name again | {med(named_at)*1000:.0f} / {max(named_at)*1000:.0f} ms | — | — | — | — | — |")
        print(f"| idle RSS of `run` | {rss:.1f} MB | — | — | — | — | < 20 MB |")
    if res["cold"][0]:
        print(f"\ncold runs (ms): agent {ms(res['cold'][0])} | compose {ms(res['cold'][1])} | floor {ms(floors)}"
              f" (compose / floor {med(res['cold'][1])/med(floors):.2f}×)")
    if repairs:
        print(f"drift repairs (ms): running {ms(repairs)} | rm -f {ms(removals)} | named {ms(named_at)} | floor create+start {ms(runs)}")


if __name__ == "__main__":
    sys.exit(main())
