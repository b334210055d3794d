#!/usr/bin/env python3
"""macula-gitops vs Debian's docker-compose on the same 20-service busybox stack, in one run.

Measures: cold converge, no-op reconcile, drift repair (container removed by hand), idle RSS of
`run`. Prints a markdown table with ratios. Everything it creates is named bench-<pid>-* and
removed at the end. Usage: python3 tests/bench/compose.py [--services 20] [--runs 5]
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


def cleanup(tag, host):
    for kind, flt in (("ps -aq", f"label=io.macula.gitops.host={host}"), ("ps -aq", f"label=com.docker.compose.project={tag}")):
        ids = sh("docker", *kind.split(), "--filter", flt).stdout.split()
        if ids:
            sh("docker", "rm", "-f", *ids, check=False)
    for flt in (f"label=io.macula.gitops.host={host}", f"label=com.docker.compose.project={tag}"):
        ids = sh("docker", "network", "ls", "-q", "--filter", flt).stdout.split()
        if ids:
            sh("docker", "network", "rm", *ids, check=False)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--services", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
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
    try:
        for _ in range(a.runs):
            cleanup(tag, host)
            # Alternate who goes first so neither always gets a warm engine.
            res["cold"][1].append(timed(*dc, "up", "-d"))
            res["cold"][0].append(timed(*mg, "apply", env=env))
            for _ in range(3):
                res["noop"][1].append(timed(*dc, "up", "-d"))
                res["noop"][0].append(timed(*mg, "apply", env=env))
        sh(*dc, "down", check=False)
        # Drift: remove a container by hand, time until the daemon has it running again.
        daemon = subprocess.Popen(mg + ["run", "--interval", "1h"], env=env, stderr=subprocess.DEVNULL)
        repairs = []
        try:
            time.sleep(3)
            for i in range(10):
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

    med = statistics.median
    print(f"| measure ({a.services} services, median of runs) | macula-gitops | docker-compose 1.29 | ratio | goal |")
    print("| --- | --- | --- | --- | --- |")
    for k, goal in (("noop", "≤ 0.25×"), ("cold", "≤ 0.8×")):
        m, c = med(res[k][0]), med(res[k][1])
        label = "no-op reconcile (`apply` vs `up -d`)" if k == "noop" else "cold converge (`apply` vs `up -d`)"
        print(f"| {label} | {m*1000:.0f} ms | {c*1000:.0f} ms | {m/c:.2f}× | {goal} |")
    print(f"| drift repair, container removed by hand (median / max of 10) | {med(repairs)*1000:.0f} ms / {max(repairs)*1000:.0f} ms | never (no watcher) | — | ≤ 1 s median |")
    print(f"| idle RSS of `run` | {rss:.1f} MB | — | — | < 20 MB |")


if __name__ == "__main__":
    sys.exit(main())
