"""Fault injection: batch runs (``python scenefit_batch.py …`` processes) killed with SIGINT, SIGTERM and SIGKILL at
random, seeded moments — during start-up or mid-run — three chains in parallel, each run resuming the checkpoint the
last one left. After every ending: result.json is valid JSON, the checkpoint loads (``weights_only=True``) and never
goes back, a handled signal gives its exit code and a .blend saved with the scene restored, the input .blend is
untouched, no temporary file is left (``*.tmp`` in the output, the run's render folder); the last run of each chain
finishes and continues the step count exactly."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.blender_scenes import diff, scene_state
from tests.test_blender_batch import SCRIPT, batch_env, files, render_folders  # noqa: F401  (files: a fixture)

SEED = 15
CHAINS = 3
KILLS_PER_CHAIN = 7  # 21 in all
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)
CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
TIMEOUT_S = 120


def _checkpoint_step(path: Path) -> int | None:
    import torch

    if not path.is_file():
        return None
    state = torch.load(path, weights_only=True)  # loadable, as a resume loads it
    assert state["format"] == "scenefit-optimizer"
    return int(state["step"])


def _chain(paths: dict[str, Any], index: int, plan: list[tuple[int, bool, float]], log: list[dict]) -> None:
    tmp = paths["tmp"]
    output = tmp / f"chain{index}"
    common = [paths["blend"], "--config", paths["config"], "--targets", paths["targets"], "--output", output]
    common += ["--batch-size", "2", "--resolution", "16x16", "--checkpoint-every", "1"]
    dead: list[int] = []  # SIGKILLed processes: the next run that renders removes their render folders
    for number, (signum, early, delay) in enumerate([*plan, (None, False, 0.0)]):
        args = [*common, "--steps", "100000" if signum is not None else "2"]
        checkpoint = output / "checkpoint.pt"
        if checkpoint.is_file():
            args += ["--resume", checkpoint]
        elif output.exists():
            args += ["--overwrite"]  # killed before its first checkpoint: start again
        saved = tmp / f"after-{index}-{number}.blend"
        if signum in CODES:
            args += ["--save", saved]
        before = _checkpoint_step(checkpoint)
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), *map(str, args)],
            env=batch_env(tmp),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp,
        )
        started, head = False, []
        try:
            if signum is not None and early:
                time.sleep(delay * 4)  # Python, bpy, torch, the targets: somewhere in start-up
            elif signum is not None:
                for line in process.stdout:  # the run has started once its settings block is out
                    head.append(line)
                    if line.startswith("scenefit: run settings"):
                        started = True
                        break
                time.sleep(delay)
            if signum is not None:
                process.send_signal(signum)
            stdout, stderr = process.communicate(timeout=TIMEOUT_S)
        finally:
            process.kill()
        stdout = "".join(head) + stdout
        stale = []
        if started or signum is None:  # this run rendered: it removed the render folders of the killed ones
            stale = [folder for killed in dead for folder in render_folders(killed)]
            dead.clear()
        if signum == signal.SIGKILL:
            dead.append(process.pid)
        started = started or any(line.startswith("step ") for line in stdout.splitlines())
        result_path = output / "result.json"
        log.append(
            {
                "chain": index,
                "number": number,
                "signal": signum,
                "early": early,
                "started": started,
                "code": process.returncode,
                "stdout": stdout,
                "stderr": stderr,
                "before": before,
                "after": _checkpoint_step(checkpoint),
                "result": json.loads(result_path.read_text()) if result_path.is_file() else None,
                "temporary": sorted(p.name for p in output.glob("*.tmp")),
                "render_folders": render_folders(process.pid) if signum != signal.SIGKILL else [],
                "stale_render_folders": stale,
                "saved": saved if signum in CODES else None,
            }
        )


def test_runs_killed_at_random_moments_always_resume(files):  # noqa: F811  (the fixture)
    import bpy

    blend_bytes = files["blend"].read_bytes()
    bpy.ops.wm.open_mainfile(filepath=str(files["blend"]))
    original = scene_state(bpy, bpy.context.scene)
    rng = random.Random(SEED)
    plans = [
        [(rng.choice(SIGNALS), rng.random() < 0.3, rng.uniform(0.0, 1.5)) for _ in range(KILLS_PER_CHAIN)]
        for _ in range(CHAINS)
    ]
    assert {s for plan in plans for s, _, _ in plan} == set(SIGNALS)
    logs: list[list[dict]] = [[] for _ in range(CHAINS)]
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            _chain(files, index, plans[index], logs[index])
        except BaseException as error:  # noqa: BLE001  (reported below, with the chain's log)
            errors.append(error)

    begun = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(CHAINS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    kinds = [(e["signal"], e["started"]) for log in logs for e in log if e["signal"] is not None]
    counts = ", ".join(
        f"{s.name} {sum(k == s for k, _ in kinds)} ({sum(k == s and not started for k, started in kinds)} in start-up)"
        for s in SIGNALS
    )
    print(f"{len(kinds)} kills in {time.monotonic() - begun:.0f} s: {counts}")

    assert files["blend"].read_bytes() == blend_bytes  # no run ever saved into its input
    problems = [problem for log in logs for entry in log for problem in _check(entry, original)]
    assert not problems, "\n\n".join(problems)


def _check(entry: dict[str, Any], original: dict[str, Any]) -> list[str]:
    """What is wrong after one ending (empty: nothing)."""
    import bpy

    where = f"chain {entry['chain']} run {entry['number']} ({entry['signal']!r}, early={entry['early']})"
    context = f"{where}: exit {entry['code']}\n{entry['stderr'][-1500:]}"
    result, after, before = entry["result"], entry["after"], entry["before"]
    checks = []
    if before is not None:
        checks.append(("the checkpoint went back", after is not None and after >= before))
    if result is not None:
        checks.append(("result.json has an unknown status", result["status"] in ("running", "stopped", "finished")))
        checks.append(("result.json is ahead of the checkpoint", (after or 0) >= (result["checkpoint_steps"] or 0)))
        steps = [e["step"] for e in result["history"]]
        checks.append(("the history does not count 1, 2, …", steps == list(range(1, len(steps) + 1))))
    # A killed process cannot remove its render folder: the next run does (folders of dead processes).
    checks.append(("a render folder was left", not entry["render_folders"] and not entry["stale_render_folders"]))
    if entry["signal"] is None:  # the last run of the chain: resumes and finishes
        checks.append(("the last run did not finish", entry["code"] == 0 and result["status"] == "finished"))
        checks.append(("the step count did not continue", result["steps"] == (before or 0) + 2 == after))
        checks.append(("a temporary file was left", not entry["temporary"]))
        checks.append(("a traceback", "Traceback" not in entry["stderr"]))
    elif entry["signal"] == signal.SIGKILL:
        checks.append(("not killed", entry["code"] == -signal.SIGKILL))
    else:
        checks.append(("wrong exit code", entry["code"] == CODES[entry["signal"]]))
        checks.append(("a traceback", "Traceback" not in entry["stderr"]))
        checks.append(("a temporary file was left", not entry["temporary"]))
        if "the scene was restored" in entry["stderr"]:  # stopped once the run ran
            stopped = result is not None and result["status"] == "stopped"
            checks.append(("result.json is not 'stopped'", stopped))
            checks.append(("the checkpoint is not the last step", stopped and result["steps"] == after))
            bpy.ops.wm.open_mainfile(filepath=str(entry["saved"]))
            changed = diff(original, scene_state(bpy, bpy.context.scene))
            checks.append(("the scene was not restored", [c for c in changed if ".session_uid:" not in c] == []))
        else:
            checks.append(("no message", "before the run started; nothing was changed" in entry["stderr"]))
            checks.append(("stopped late", not entry["started"]))
    return [f"{what} — {context}" for what, ok in checks if not ok]
