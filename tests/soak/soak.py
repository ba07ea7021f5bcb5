"""The seeded chaos soak of a five-daemon office (issue 16): `make soak SEED=N MINUTES=M [TIMINGS=fast]`.

    .venv/bin/python -m tests.soak.soak --seed 1 --minutes 20 [--timings fast] [--json out.json]

Starts the office (tests/soak/office.py), a user changing the data (user.py), a fault every few seconds
(faults.py) until a quiet tail, watches the coordinator and the node's log (watch.py), then pauses the
schedule, lets the office settle (jobs ended, logs converged, a repair round) and judges the invariants
(invariants.py); prints them as a table (report.py). Exit 0 when every invariant holds, 1 when one is
broken, 2 when the soak itself could not run. Needs root (tmpfs mount, nft rules, group ids) and nft.
Everything it sets up is undone on the way out, on failure and on Ctrl-C / SIGTERM too. See
docs/reliability.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType
from typing import Any

from tests.daemon.harness import wait_for
from tests.daemon.test_peerstore import tree_hashes
from tests.soak import invariants as inv
from tests.soak import report as rep
from tests.soak.faults import Firewall, Injector, remove_stale_tables
from tests.soak.office import ADMIN, NODE, TIMINGS, SoakOffice
from tests.soak.user import User, compare
from tests.soak.watch import Watcher, admin_get

EXIT_OK, EXIT_BROKEN, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130


class Log:
    def __init__(self, path: Path) -> None:
        self.t0 = time.time()
        self.path = path

    def __call__(self, msg: str) -> None:
        line = f"[soak +{time.time() - self.t0:6.0f}s] {msg}"
        print(line, flush=True)
        with open(self.path, "a") as fh:
            fh.write(line + "\n")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="soak", description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--minutes", type=float, default=20.0, help="length of the run, faults and quiet tail")
    p.add_argument("--seconds", type=float, help="length of the run in seconds (instead of --minutes)")
    p.add_argument("--timings", choices=sorted(TIMINGS), default="default")
    p.add_argument("--json", type=Path, help="write the whole record there")
    p.add_argument("--dir", type=Path, help="work here and keep it (homes, daemon logs); default: a temp dir, "
                                            "removed at the end")
    p.add_argument("--settle", type=float, help="most seconds to wait for the office to settle")
    return p.parse_args(argv)


def preflight() -> None:
    if os.geteuid() != 0:
        raise SystemExit("the soak needs root: it mounts a tmpfs, adds nft rules and runs daemons under group ids")
    if shutil.which("nft") is None:
        raise SystemExit("the soak needs nft (apt-get install nftables; .ci/system-deps does)")


class Soak:
    def __init__(self, args: argparse.Namespace, root: Path, log: Log) -> None:
        self.args = args
        self.t = TIMINGS[args.timings]
        self.root = root
        self.log = log
        self.duration = args.seconds if args.seconds is not None else args.minutes * 60
        self.quiet = min(self.t.quiet, 0.4 * self.duration)
        self.settle_max = args.settle if args.settle is not None else (300.0 if self.t.name == "default" else 150.0)
        self.office = SoakOffice(root, self.t)
        self.fw = Firewall()
        self.user = User(self.office.datasets, self.office.data / ".staging", args.seed, self.t.user_every)
        self.injector: Injector | None = None
        self.watcher: Watcher | None = None
        self.record: dict[str, Any] = {"seed": args.seed, "timings": self.t.name, "seconds": self.duration,
                                       "quiet_s": self.quiet, "work_dir": str(root)}

    # ---- the run ----------------------------------------------------------------------------

    def run(self) -> list[inv.Verdict]:
        self.fw.create()
        self.user.seed_data()
        schedule = self.office.setup(self.log)
        self.record["schedule"] = schedule
        start = time.time()
        since = float(schedule.get("since") or start)
        end = start + self.duration
        self.injector = Injector(self.office, self.fw, self.args.seed, end - self.quiet, self.log)
        self.watcher = Watcher(self.office, self.injector.down, self.t.snapshot_poll)
        self.watcher.start()
        self.user.start()
        self.injector.start()
        self.log(f"running {self.duration:.0f} s (seed {self.args.seed}, timings {self.t.name}); faults until the "
                 f"last {self.quiet:.0f} s")
        while time.time() < end:
            time.sleep(min(30.0, max(0.0, end - time.time())))
            self.log(f"{len(self.injector.history)} faults so far, {len(self.injector.active)} active, "
                     f"{self.user.changes} data changes")
        self.injector.stop()
        self.user.stop()
        paused = self._pause(schedule["id"])
        self.record.update(started=start, ended=end, paused=paused)
        self.log(f"run over; schedule paused at +{paused - start:.0f} s; settling (at most {self.settle_max:.0f} s)")
        settled = self._settle(paused + self.settle_max)
        self.watcher.stop()
        return self._judge(schedule, since, paused, settled)

    def _pause(self, schedule_id: str) -> float:
        a = self.office.members[ADMIN].peer
        assert a is not None

        def pause() -> bool:
            code, out = a.api("POST", "/v1/schedules/pause", {"node": NODE, "id": schedule_id})
            if code != 200:
                raise AssertionError(out)
            return True
        wait_for(pause, 120, "the schedule paused", interval=2)
        return time.time()

    def _digests(self) -> dict[str, str]:
        out = {}
        for m in self.office.members.values():
            assert m.peer is not None
            try:
                out[m.name] = str(admin_get(m.peer.home, "/v1/status", 5)["logs_digest"])
            except Exception as exc:
                out[m.name] = f"no answer: {exc}"
        return out

    def _settle(self, deadline: float) -> dict[str, Any]:
        assert self.watcher is not None
        out: dict[str, Any] = {}
        # Jobs end (or their deadline passes) first: their events are what the logs must agree on.
        while time.time() < deadline:
            events = self.watcher.node_log() or []
            out["open_jobs"] = inv.open_jobs(events, time.time(), self.t.unended_grace)
            if not out["open_jobs"]:
                break
            time.sleep(3)
        while time.time() < deadline:
            d1 = self._digests()
            if len(set(d1.values())) == 1:
                time.sleep(2)
                if self._digests() == d1:
                    break
            time.sleep(2)
        out["digests"] = self._digests()
        out["converged"] = len(set(out["digests"].values())) == 1
        out["settled_s"] = round(time.time() - (deadline - self.settle_max), 1)
        self.log(f"settled after {out['settled_s']} s: logs {'converged' if out['converged'] else 'DIFFER'}; "
                 f"{len(out['open_jobs'])} job(s) still open")
        return out

    def _repair(self) -> dict[str, Any]:
        a = self.office.members[ADMIN].peer
        assert a is not None
        last: dict[str, Any] = {}
        for _ in range(4):
            code, res = a.api("POST", "/v1/storage/repair", {})
            code2, st = a.api("GET", "/v1/storage")
            last = {"repair": res if code == 200 else f"{code} {res}",
                    "under_replicated": st.get("under_replicated") if code2 == 200 else None}
            if last["under_replicated"] == 0:
                break
            time.sleep(5)
        return last

    def _check(self) -> dict[str, Any]:
        a = self.office.members[ADMIN].peer
        assert a is not None
        res = self.office.office.cli("repo", "check", "--read-data", "--repo", f"office:{NODE}", "--home",
                                     str(a.home), "--cache-dir", str(self.root / "cache-check"), check=False,
                                     timeout=600)
        return {"exit": res.rc, "output": (res.out + res.err)[-3000:]}

    def _restores(self, snaps: list[dict[str, Any]], since: dict[str, float],
                  done_seen: dict[str, float]) -> list[dict[str, Any]]:
        """Restore each snapshot and compare it with the user's states current from `since[job]` (the job's
        span's start) to when the soak first saw the snapshot."""
        assert self.watcher is not None
        a = self.office.members[ADMIN].peer
        assert a is not None
        out = []
        for s in snaps:
            path = (s.get("paths") or [""])[0]
            target = self.root / "restore" / s["id"][:16]
            res = self.office.office.cli("restore", NODE, s["id"], "--target", str(target), "--home", str(a.home),
                                         check=False, timeout=300)
            row: dict[str, Any] = {"snapshot": s["id"][:16], "path": path, "job": (s.get("extra") or {}).get("job")}
            if res.rc != 0:
                row["problems"] = [f"restore exited {res.rc}: {(res.out + res.err).strip()[-500:]}"]
                out.append(row)
                continue
            inside = target / path.lstrip("/")
            got = tree_hashes(inside if inside.is_dir() else target)
            job = row["job"]
            lo = since.get(str(job), 0.0)
            hi = min(x for x in (done_seen.get(s["id"]), self.watcher.snapshots.get(s["id"], {}).get("first_seen"),
                                 time.time()) if x is not None)
            states = self.user.candidates(path, lo, hi)
            row.update(states=len(states), files=len(got), interval=[round(lo, 1), round(hi, 1)],
                       problems=compare(got, states) if states else ["no recorded source state in its interval"])
            shutil.rmtree(target, ignore_errors=True)
            out.append(row)
        return out

    # ---- the verdicts -----------------------------------------------------------------------

    def _judge(self, schedule: dict[str, Any], since: float, paused: float,
               settled: dict[str, Any]) -> list[inv.Verdict]:
        assert self.injector is not None and self.watcher is not None
        w, o = self.watcher, self.office
        a = o.members[ADMIN].peer
        assert a is not None
        events = w.node_log(30) or []
        now = time.time()
        for e in events:
            w.first_seen.setdefault(str(e["id"]), now)
        control = list(admin_get(a.home, "/v1/log?log=office", 30))
        repair = self._repair()
        self.log(f"repair: under-replicated {repair.get('under_replicated')}")
        final = w.list_snapshots() or []
        w.record_snapshots(final)
        self.log(f"{len(final)} snapshots kept, {len(w.snapshots)} seen in all; check --read-data ...")
        check = self._check()
        names = {pid: n for n, pid in w.ids.items()}
        slots = inv.expected_slots(self.t.every, self.t.window, schedule["id"], NODE, since, paused)
        faults = [inv.NetFault(f.began, f.ended or now, tuple(tuple(s) for s in f.detail["sides"]))
                  for f in self.injector.history if "sides" in f.detail]
        v1, v2, jobs = inv.judge_jobs(slots, self.t.window, events, list(w.snapshots.values()), faults, names,
                                      w.first_seen)
        # The agents' forward clock steps: a snapshot's run may have begun that much before its job's span.
        steps = [(f.began, f.ended or now, float(f.detail["step_s"])) for f in self.injector.history
                 if f.kind == "clock_step"]
        run_from = inv.runs_began(slots, self.t.window, events, w.first_seen, steps)
        done_seen = inv.done_first_seen(events, w.first_seen, now)
        self.log(f"restoring {len(final)} snapshots ...")
        restores = self._restores(final, run_from, done_seen)
        texts = {m.name: (m.peer.log.read_text(errors="replace") if m.peer and m.peer.log.exists() else "")
                 for m in o.members.values()}
        fails = inv.log_failures(texts)
        gaps = inv.coordinator_gaps(w.samples, w.ids)
        bound = self.t.lease + self.t.dead
        verdicts = [v1, v2, *inv.end_verdicts(settled, repair, check, restores, fails, gaps, bound)]
        t = inv.terms(control)
        self.record.update(
            faults=[f.to_json() for f in self.injector.history], fault_counts=self.injector.counts(),
            user_changes=self.user.changes, settle=settled, repair=repair, check=check, restores=restores,
            coordinator=gaps, terms=t, daemon_logs={n: {k: v for k, v in f.items()} for n, f in fails.items()},
            jobs=jobs, snapshots_seen=len(w.snapshots), snapshots_kept=len(final), watcher_errors=w.errors,
            invariants=[v.to_json() for v in verdicts])
        self.record["summary"] = {
            "faults": ", ".join(f"{k} {n}" for k, n in self.injector.counts().items()),
            "elections": f"{t['terms']} terms (highest {t['highest_term']}), {t['claims']} claims, "
                         f"{len(t['terms_claimed_by_several'])} terms claimed by several peers",
            "slots": ", ".join(f"{k} {n}" for k, n in sorted(jobs["slot_states"].items())),
            "user": f"{self.user.changes} data changes",
        }
        return verdicts

    # ---- the way out ------------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        problems: list[str] = []
        injector = self.injector
        for what, fn in (("watcher", self.watcher.stop if self.watcher else None), ("user", self.user.stop),
                         ("faults", (lambda: injector.stop(restarts=False)) if injector else None)):
            if fn is None:
                continue
            try:
                fn()
            except Exception as exc:
                problems.append(f"stopping the {what}: {exc}")
        if self.injector is not None:
            self.injector.emergency_undo()
        else:
            (self.office.storage_home / "ballast").unlink(missing_ok=True)
        err = self.fw.remove()
        if err:
            problems.append(err)
        problems += self.office.close()
        return problems


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    preflight()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    remove_stale_tables()
    keep = args.dir is not None
    root = args.dir.resolve() if keep else Path(tempfile.mkdtemp(prefix=f"pbsoak-{os.getpid()}-"))
    root.mkdir(parents=True, exist_ok=True)
    log = Log(root / "soak.log")
    soak = Soak(args, root, log)
    verdicts: list[inv.Verdict] = []
    code = EXIT_ERROR
    try:
        verdicts = soak.run()
        code = EXIT_OK if all(v.ok for v in verdicts) else EXIT_BROKEN
    except KeyboardInterrupt as exc:
        log(f"interrupted ({exc or 'Ctrl-C'}): undoing everything")
        soak.record["error"] = "interrupted"
        code = EXIT_INTERRUPTED
    except Exception as exc:
        log(f"the soak could not run: {type(exc).__name__}: {exc}")
        soak.record["error"] = f"{type(exc).__name__}: {exc}"
    finally:
        # Signals are ignored while undoing: a second Ctrl-C must not leave rules or a mount behind.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        problems = soak.cleanup()
        soak.record["cleanup_problems"] = problems
        for p in problems:
            log(f"cleanup: {p}")
        if args.json is not None:
            rep.write(args.json, soak.record)
        if not keep:
            res = subprocess.run(["rm", "-rf", str(root)], capture_output=True, text=True)
            if res.returncode != 0:
                print(f"cleanup: rm -rf {root}: {res.stderr.strip()}", file=sys.stderr)
    if verdicts:
        print()
        print(rep.table(verdicts, soak.record.get("summary", {})))
        if code == EXIT_BROKEN:
            print("\nBROKEN: " + "; ".join(v.key for v in verdicts if not v.ok))
    return code


if __name__ == "__main__":
    sys.exit(main())
