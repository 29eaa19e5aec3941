"""The platform's E2B code, unmodified, against swissbox: run with E2B_API_URL,
E2B_SANDBOX_URL and E2B_API_KEY pointing at an agent or a scheduler (OTHER_TENANT_KEY: a
key of another tenant). Prints one line per check; exits non-zero at the first failure."""
import os
import sys
import threading
import time

from e2b import CommandExitException, PtySize
from e2b.exceptions import AuthenticationException, NotFoundException, SandboxException
from e2b_code_interpreter import Sandbox


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name}: {detail}", flush=True)
        sys.exit(1)
    print(f"ok {name}", flush=True)


def main():
    t0 = time.time()
    sbx = Sandbox.create()
    check("create", sbx.sandbox_id.startswith("sbx-"), sbx.sandbox_id)
    print(f"  create took {(time.time() - t0) * 1000:.0f} ms", flush=True)

    ex = sbx.run_code('print("hello")')
    check("run_code hello", ex.logs.stdout == ["hello\n"], ex.logs)
    sbx.run_code("x = 41")
    ex = sbx.run_code("x + 1")
    check("state across calls and expression result", ex.text == "42", ex)
    ex = sbx.run_code("def f():\n    return 1 / 0\nf()")
    check("exception as a result", ex.error is not None and ex.error.name == "ZeroDivisionError"
          and "line 2" in ex.error.traceback, ex.error)
    ex = sbx.run_code("const a = await Promise.resolve(6); console.log(a * 7)", language="js")
    check("javascript", ex.logs.stdout == ["42\n"], ex.logs)
    ex = sbx.run_code("import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.show()")
    pngs = [r for r in ex.results if r.png]
    check("matplotlib chart as a PNG result", len(pngs) == 1 and pngs[0].png.startswith("iVBOR"),
          f"{ex.results} {ex.error}")
    seen = []
    ex = sbx.run_code("import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.4)",
                      on_stdout=lambda m: seen.append(time.time()))
    done = time.time()
    check("on_stdout arrives before the run ends", len(seen) >= 3 and done - seen[0] > 0.5,
          f"{seen} {done}")

    r = sbx.commands.run("echo out; echo err >&2")
    check("commands.run", r.stdout == "out\n" and r.stderr == "err\n" and r.exit_code == 0, r)
    try:
        sbx.commands.run("exit 3")
        check("exit code", False, "no exception")
    except CommandExitException as e:
        check("exit code", e.exit_code == 3, e)
    h = sbx.commands.run("sleep 60", background=True)
    check("background listed", h.pid in [p.pid for p in sbx.commands.list()])
    check("background killed", sbx.commands.kill(h.pid))
    h = sbx.commands.run("sleep 0.5; echo later; exit 4", background=True)
    h.disconnect()
    again_h = sbx.commands.connect(h.pid)
    try:
        again_h.wait()
        check("connect to a running process", False, "no exit error")
    except CommandExitException as e:
        check("connect to a running process", e.exit_code == 4 and "later" in e.stdout, e)
    h = sbx.commands.run("read line; echo got:$line", background=True, stdin=True)
    sbx.commands.send_stdin(h.pid, "abc\n")
    check("stdin", h.wait().stdout == "got:abc\n")

    # A real terminal: bash -i on a PTY of the asked size, resized, ended by its input.
    term = sbx.pty.create(PtySize(rows=24, cols=80), timeout=30)
    sbx.pty.send_stdin(term.pid, b"tty; stty size\n")
    screen = bytearray()
    reader = threading.Thread(target=lambda: [screen.extend(p) for _, _, p in term if p], daemon=True)
    reader.start()
    time.sleep(1)
    sbx.pty.resize(term.pid, PtySize(rows=40, cols=100))
    sbx.pty.send_stdin(term.pid, b"stty size; exit\n")
    reader.join(timeout=10)
    text = bytes(screen).decode(errors="replace")
    check("pty", "/dev/pts/" in text and "24 80" in text and "40 100" in text, text[-300:])

    sbx.files.write("/home/user/a.txt", "data")
    check("files write/read", sbx.files.read("/home/user/a.txt") == "data")
    names = [e.name for e in sbx.files.list("/home/user")]
    check("files list", "a.txt" in names, names)
    check("files exists", sbx.files.exists("/home/user/a.txt") and not sbx.files.exists("/home/user/no"))
    sbx.files.remove("/home/user/a.txt")
    check("files remove", not sbx.files.exists("/home/user/a.txt"))
    big = os.urandom(20 << 20)
    sbx.files.write("big.bin", big)
    check("a 20 MB file both ways", sbx.files.read("big.bin", format="bytes") == big)

    # files.watch_dir: a watcher polled for what changed (recursive), then stopped.
    sbx.files.make_dir("/home/user/watched")
    handle = sbx.files.watch_dir("/home/user/watched", recursive=True)
    # A new directory is watched once the watch has seen it appear (inotify's way).
    sbx.commands.run("mkdir /home/user/watched/d")
    seen, deadline = [], time.time() + 10

    def poll_until(last):
        while time.time() < deadline and last not in seen:
            seen.extend((e.type.value, e.name) for e in handle.get_new_events())
            time.sleep(0.05)

    poll_until(("create", "d"))
    sbx.commands.run("cd /home/user/watched && echo hi > d/f && rm d/f")
    poll_until(("remove", "d/f"))
    want = [("create", "d"), ("create", "d/f"), ("write", "d/f"), ("remove", "d/f")]
    check("files.watch_dir", seen == want, seen)
    handle.stop()
    try:
        handle.get_new_events()
        check("a stopped watcher is gone", False, "events after stop")
    except SandboxException:
        check("a stopped watcher is gone", True)

    check("list", sbx.sandbox_id in [s.sandbox_id for s in Sandbox.list().next_items()])
    again = Sandbox.connect(sbx.sandbox_id)
    check("connect keeps the state", again.run_code("x").text == "41")
    sbx.set_timeout(600)
    left = (sbx.get_info().end_at.timestamp() - time.time())
    check("set_timeout", 590 < left < 610, left)

    # Refusals: no key, a wrong key, no access token, another tenant.
    try:
        Sandbox.list(api_key="e2b_" + "f" * 40).next_items()
        check("wrong key refused", False, "listed")
    except AuthenticationException:
        check("wrong key refused", True)
    other = os.environ.get("OTHER_TENANT_KEY")
    if other:
        try:
            Sandbox.connect(sbx.sandbox_id, api_key=other)
            check("another tenant gets not found", False, "connected")
        except (NotFoundException, SandboxException) as e:
            check("another tenant gets not found", "404" in str(e) or isinstance(e, NotFoundException), e)
    import httpx
    base = os.environ["E2B_SANDBOX_URL"]
    for path, port in (("/files?path=big.bin", "49983"),):
        r = httpx.get(base + path, headers={"E2b-Sandbox-Id": sbx.sandbox_id, "E2b-Sandbox-Port": port})
        check("no access token refused", r.status_code == 401, r.status_code)
    r = httpx.post(base + "/execute", json={"code": "1"},
                   headers={"E2b-Sandbox-Id": sbx.sandbox_id, "E2b-Sandbox-Port": "49999"})
    check("no access token refused (/execute)", r.status_code == 401, r.status_code)
    r = httpx.get(os.environ["E2B_API_URL"] + "/v2/sandboxes")
    check("no key refused", r.status_code == 401 and r.json().get("code") == 401, r.text)

    check("kill", sbx.kill())
    check("kill again is False", Sandbox.kill(sbx.sandbox_id) is False)


if __name__ == "__main__":
    main()
