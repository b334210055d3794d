#!/usr/bin/env python3
"""Edit → running for a local directory, the agent's daemon beside a user's `docker-compose up -d`.

A two-service stack (an httpd `app` depending on a `cache`) in a local desired-state directory
run by `macula-gitops run --desired-state DIR` (polling off: only the directory watch wakes it),
and the same compose file in a directory of its own for docker-compose 1.29. Each round changes
`app`'s environment value in both files (written as an editor saves: a temporary file renamed
over the original) and times, from the save, until the engine starts the new `app` container: the
agent on its own, then for compose a user's `docker-compose up -d` typed the moment the file is
saved. Who goes first alternates. Times come from the engine's events (`docker_api.Events`).
Everything is named edit<pid>* and removed at the end.
Usage: tests/bench/edit-latency.sh [BIN]  (ROUNDS=10)
"""
import os, shutil, statistics, subprocess, sys, tempfile, time

import docker_api as api
from compose import IMAGE, desired_state, ensure_image

# Both services stop on SIGTERM at once (as PID 1 they would ignore it): compose stops before it
# removes, and would otherwise wait its 10 s grace time.
COMPOSE = """services:
  app:
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /bin & wait"]
    environment: {{VERSION: "{version}"}}
    depends_on: [cache]
  cache:
    image: {image}
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
"""


def save(path, version):
    """Write as editors do: a temporary file beside it, renamed over it."""
    tmp = os.path.join(os.path.dirname(path), ".compose.yaml.swp")
    with open(tmp, "w") as f:
        f.write(COMPOSE.format(image=IMAGE, version=version))
    os.rename(tmp, path)


def running(name):
    try:
        return api.inspect(name)["State"]["Running"]
    except RuntimeError:
        return False


def main():
    bin_, rounds = sys.argv[1], int(os.environ.get("ROUNDS", "10"))
    ensure_image()
    tag = f"edit{os.getpid()}"
    host = f"{tag}-host"
    work = tempfile.mkdtemp()
    ds, agent_file = desired_state(work, tag)
    os.makedirs(os.path.join(work, "compose"))
    compose_file = os.path.join(work, "compose", "compose.yaml")
    project = f"{tag}c"
    for p in (agent_file, compose_file):
        save(p, 0)
    dc = ["docker-compose", "-p", project, "-f", compose_file]
    env = dict(os.environ, MACULA_GITOPS_LOG=os.environ.get("MACULA_GITOPS_LOG", "warn"))
    daemon = subprocess.Popen(
        [bin_, "--desired-state", ds, "--host", host, "--state-dir", os.path.join(work, "state"),
         "run", "--interval", "1h", "--listen", "127.0.0.1:0"],
        env=env, stderr=open(os.environ["TRACE"], "w") if os.environ.get("TRACE") else subprocess.DEVNULL)
    events = api.Events({"type": ["container"], "event": ["start"]})
    agent, compose = [], []

    def started(owner):
        """The `start` of a new `app` container of `owner` (agent or compose)."""
        def pred(e):
            if api.attr(e, "com.docker.compose.service") != "app":
                return False
            if owner == "agent":
                return api.attr(e, "io.macula.gitops.host") == host
            return api.attr(e, "com.docker.compose.project") == project
        return pred

    def by_agent(version):
        events.mark()
        t0 = time.time_ns()
        save(agent_file, version)
        return (events.wait(started("agent"))["timeNano"] - t0) / 1e9

    def by_compose(version):
        events.mark()
        t0 = time.time_ns()
        save(compose_file, version)
        subprocess.run(dc + ["up", "-d"], check=True, capture_output=True)
        return (events.wait(started("compose"))["timeNano"] - t0) / 1e9

    try:
        subprocess.run(dc + ["up", "-d"], check=True, capture_output=True)
        end = time.monotonic() + 60  # the daemon's first pass
        while not running(f"{tag}-app-1"):
            if time.monotonic() > end:
                raise SystemExit("the agent's first pass did not start app within 60 s")
            time.sleep(0.1)
        for i in range(1, rounds + 1):
            time.sleep(1)
            if i % 2:
                agent.append(by_agent(i))
                time.sleep(1)
                compose.append(by_compose(i))
            else:
                compose.append(by_compose(i))
                time.sleep(1)
                agent.append(by_agent(i))
        # Both run the last edit (the agent renames its new container just after it starts).
        time.sleep(1)
        for name in (f"{tag}-app-1", f"{project}_app_1"):
            got = [e for e in api.inspect(name)["Config"]["Env"] if e.startswith("VERSION=")]
            assert got == [f"VERSION={rounds}"], (name, got)
    finally:
        events.close()
        daemon.terminate()
        daemon.wait()
        subprocess.run(dc + ["down", "-t", "0"], capture_output=True)
        for kind in ("container", "network"):
            ids = subprocess.run(["docker", kind, "ls", "-q", *(["-a"] if kind == "container" else []),
                                  "--filter", f"label=io.macula.gitops.host={host}"],
                                 capture_output=True, text=True).stdout.split()
            if ids:
                subprocess.run(["docker", kind, "rm", *(["-f"] if kind == "container" else []), *ids],
                               capture_output=True)
        shutil.rmtree(work, ignore_errors=True)

    med = statistics.median
    ms = lambda xs: " ".join(f"{x*1000:.0f}" for x in xs)
    print(f"| edit → new container running ({rounds} edits) | median | max | ratio of medians |")
    print("| --- | --- | --- | --- |")
    print(f"| macula-gitops `run --desired-state` (save only) | {med(agent)*1000:.0f} ms | {max(agent)*1000:.0f} ms | **{med(agent)/med(compose):.2f}×** |")
    print(f"| save + `docker-compose up -d` (1.29) | {med(compose)*1000:.0f} ms | {max(compose)*1000:.0f} ms | 1 |")
    print(f"\nagent (ms): {ms(agent)}\ncompose (ms): {ms(compose)}")


if __name__ == "__main__":
    main()
