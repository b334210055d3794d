#!/usr/bin/env python3
"""macula-gitops vs Debian's docker-compose on the same 20-service busybox stack, in one run.

Measures: cold converge, no-op reconcile, drift repair (container removed by hand), idle RSS of
`run`. Cold converge has a third column, the engine's floor: the same network and the same 20
containers (image, command, env, restart policy, healthcheck, service alias) created by 20
parallel `docker run -d`. Each run does all three cold from nothing, rotating who goes first.
Prints a markdown table with ratios. Everything it creates is named bench<pid>* and removed at
the end. Usage: python3 tests/bench/compose.py [--services 20] [--runs 5]
"""
import argparse, os, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "target/release/macula-gitops")
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


def compose_file(n):
    out = ["services:"]
    for i in range(n):
        out += [f"  svc{i}:", f"    image: {IMAGE}", "    command: httpd -f -p 8080 -h /bin",
                "    environment: {ROLE: bench}", "    restart: unless-stopped",
                "    healthcheck: {test: [CMD, wget, -q, -O, /dev/null, 'http://127.0.0.1:8080/busybox'], interval: 2s}"]
    return "\n".join(out) + "\n"


HEALTH = "wget -q -O /dev/null http://127.0.0.1:8080/busybox"


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
    a = ap.parse_args()
    if not os.path.exists(BIN):
        sh("cargo", "build", "--release", "-q", cwd=ROOT)
    ensure_image()
    tag = f"bench{os.getpid()}"
    host = f"{tag}-host"
    work = tempfile.mkdtemp()
    ds = os.path.join(work, "desired-state")
    os.makedirs(os.path.join(ds, "stacks", tag))
    open(os.path.join(ds, "hosts.yaml"), "w").write(f"hosts:\n  default: {{stacks: [{tag}]}}\n")
    cf = os.path.join(ds, "stacks", tag, "compose.yaml")
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
        for r in range(a.runs):
            # Rotate who goes first so none always gets a warm (or a busy) engine; each cold run
            # starts from nothing (the others' containers and networks removed).
            for who in order[r % 3:] + order[:r % 3]:
                cleanup(tag, host)
                who()
        cleanup(tag, host)
        repairs, rss = [], float("nan")
        if a.no_drift:
            return report(a, res, floors, repairs, rss)
        # Drift: remove a container by hand, time until the daemon has it running again. The
        # stack is converged first so the daemon's first pass changes nothing.
        sh(*mg, "apply", env=env)
        daemon = subprocess.Popen(mg + ["run", "--interval", "1h"], env=env, stderr=subprocess.DEVNULL)
        try:
            time.sleep(3)
            for i in range(a.repairs):
                name = f"{tag}-svc{i}-1"
                t = time.perf_counter()
                sh("docker", "rm", "-f", name)
                while sh("docker", "inspect", "-f", "{{.State.Running}}", name, check=False).stdout.strip() != "true":
                    if time.perf_counter() - t > 30:
                        raise SystemExit(f"{name} not repaired in 30s")
                    time.sleep(0.01)
                repairs.append(time.perf_counter() - t)
                time.sleep(0.5)
            time.sleep(3)
            rss = int([l for l in open(f"/proc/{daemon.pid}/status") if l.startswith("VmRSS")][0].split()[1]) / 1024
        finally:
            daemon.terminate()
            daemon.wait()
    finally:
        cleanup(tag, host)
        shutil.rmtree(work, ignore_errors=True)
    report(a, res, floors, repairs, rss)


def report(a, res, floors, repairs, rss):
    med = statistics.median
    ms = lambda xs: " ".join(f"{x*1000:.0f}" for x in xs)
    print(f"| measure ({a.services} services, median) | macula-gitops | docker-compose 1.29 | engine floor | agent / compose | agent / floor | goal |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    m, c = med(res["noop"][0]), med(res["noop"][1])
    print(f"| no-op reconcile (`apply` vs `up -d`, 3 per run) | {m*1000:.0f} ms | {c*1000:.0f} ms | — | {m/c:.2f}× | — | ≤ 0.25× compose |")
    m, c, f = med(res["cold"][0]), med(res["cold"][1]), med(floors)
    print(f"| cold converge (`apply` / `up -d` / {a.services} parallel `docker run -d`) | {m*1000:.0f} ms | {c*1000:.0f} ms | {f*1000:.0f} ms | {m/c:.2f}× | {m/f:.2f}× | ≤ 0.7× compose, ≤ 1.15× floor |")
    if repairs:
        print(f"| drift repair, container removed by hand (median / max of {len(repairs)}) | {med(repairs)*1000:.0f} ms / {max(repairs)*1000:.0f} ms | never (no watcher) | — | — | — | ≤ 0.5 s median |")
        print(f"| idle RSS of `run` | {rss:.1f} MB | — | — | — | — | < 20 MB |")
    print(f"\ncold runs (ms): agent {ms(res['cold'][0])} | compose {ms(res['cold'][1])} | floor {ms(floors)}"
          f" (compose / floor {c/f:.2f}×)")
    if repairs:
        print(f"drift repairs (ms): {ms(repairs)}")


if __name__ == "__main__":
    sys.exit(main())
