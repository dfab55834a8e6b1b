"""SceneFit in a real Blender executable (Debian 13's Blender 4.3.2, inside the root tools/real_blender.sh builds):
the built zip installed, listed, enabled, disabled and removed with Blender's own command line; batch mode through
``blender -b -P <installed scenefit_batch.py>``; the panel driven for real under Xvfb (tests/real_blender_ui.py).

Every Blender here gets a HOME of its own (a test's tmp_path, bind-mounted into the root at the same path), so
nothing is shared between tests or with the machine. Building the root needs root privileges and Debian's package
registry; when it cannot be built these tests fail with the reason, they are never skipped.
``bash tools/test.sh -m real_blender`` runs only them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TOOL = ROOT / "tools" / "real_blender.sh"
PRESET = ROOT / "presets" / "supershape_density.json"
MODULE = "bl_ext.user_default.scenefit"
BLENDER_ERRORS = re.compile(r"Traceback|^Error:|\bError: ", re.MULTILINE)
pytestmark = pytest.mark.real_blender


@pytest.fixture(scope="session")
def real_root() -> None:
    """The Debian root, built on first use (minutes) and reused after; a failed build fails the tests."""
    completed = subprocess.run(["bash", str(TOOL), "--build-only"], capture_output=True, text=True, timeout=1800)
    if completed.returncode != 0:
        pytest.fail(f"tools/real_blender.sh could not build the Debian root:\n{completed.stderr[-4000:]}")


def in_root(share: Path, *command: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run a command inside the root with ``share`` visible at its own path; stdout and stderr together."""
    env = {**os.environ, "SCENEFIT_REAL_BLENDER_SHARE": str(share)}
    return subprocess.run(
        ["bash", str(TOOL), *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )


class RealBlender:
    """``blender`` inside the root with HOME = a folder of this test."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.home = folder / "home"
        self.home.mkdir(parents=True, exist_ok=True)

    def run(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return in_root(self.folder, "env", f"HOME={self.home}", "blender", *args, timeout=timeout)

    def ok(self, *args: str, timeout: float = 300) -> str:
        completed = self.run(*args, timeout=timeout)
        assert completed.returncode == 0, (
            f"blender {' '.join(args)} exited {completed.returncode}:\n" + (completed.stdout[-4000:])
        )
        return completed.stdout

    def python(self, code: str, *before: str) -> str:
        """Run Python in ``blender -b`` (a Python error exits 1); its output."""
        return self.ok("-b", *before, "--python-exit-code", "1", "--python-expr", code)

    def extension(self, *args: str) -> str:
        return self.ok("--command", "extension", *args)

    def install(self, zip_path: Path) -> Path:
        """Install and enable the zip as a user does; the installed scenefit_batch.py."""
        local = self.folder / zip_path.name
        shutil.copy(zip_path, local)
        self.extension("install-file", "-r", "user_default", "-e", str(local))
        found = sorted(self.home.glob(".config/blender/*/extensions/user_default/scenefit/scenefit_batch.py"))
        assert found, "the installed extension has no scenefit_batch.py"
        return found[0]

    def enabled(self) -> bool:
        out = self.python(f"import bpy; print('ENABLED', {MODULE!r} in bpy.context.preferences.addons)")
        return "ENABLED True" in out


def assert_clean(log: str) -> None:
    """No Python traceback and no error line in Blender's console output (each one shown with what follows)."""
    lines = log.splitlines()
    bad = ["\n".join(lines[i : i + 8]) for i, line in enumerate(lines) if BLENDER_ERRORS.search(line)]
    assert not bad, "Blender's console shows errors:\n" + "\n---\n".join(bad[:5])


@pytest.fixture
def blender(tmp_path: Path, real_root: None) -> RealBlender:
    return RealBlender(tmp_path)


def test_extension_install_list_enable_disable_remove(blender: RealBlender, extension_zip: Path) -> None:
    version = blender.ok("--version")
    assert re.search(r"Blender (4\.[2-9]|[5-9]\.)", version), version
    blender.install(extension_zip)
    listed = blender.extension("list")
    assert 'scenefit [installed]: "SceneFit"' in listed, listed
    assert blender.enabled()
    assert "torch " in blender.python(
        f"import importlib, bpy; m = importlib.import_module('{MODULE}.torch_vendor');"
        "import torch; print('torch', torch.__version__)"
    )

    blender.python(
        f"import addon_utils, bpy; addon_utils.disable({MODULE!r}, default_set=True); bpy.ops.wm.save_userpref()"
    )
    assert not blender.enabled()
    blender.python(
        f"import addon_utils, bpy; addon_utils.enable({MODULE!r}, default_set=True); bpy.ops.wm.save_userpref()"
    )
    assert blender.enabled()

    assert 'Removed "scenefit"' in blender.extension("remove", "user_default.scenefit")
    assert not list(blender.home.glob(".config/blender/*/extensions/user_default/scenefit"))
    listed = blender.extension("list")
    assert 'Repository: "User Default"' in listed and "scenefit" not in listed, listed
    assert not blender.enabled()


def batch(blender: RealBlender, script: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return blender.run("-b", "-P", str(script), "--python-exit-code", "1", "--", *args, timeout=timeout)


def generate_targets(blender: RealBlender, script: Path, count: int, size: int = 32) -> Path:
    folder = blender.folder / "targets"
    completed = batch(
        blender, script, "--config", str(PRESET), "--build-scene", "--resolution", str(size),
        "--generate", str(count), "--source", "truth", "--seed", "1", "--output", str(folder),
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-4000:]
    assert_clean(completed.stdout)
    images = sorted((folder / "images").iterdir())
    assert len(images) == count
    assert len((folder / "labels.csv").read_text().strip().splitlines()) == count + 1  # a header and one per image
    return folder / "images"


def test_batch_demo_fit_in_real_blender(blender: RealBlender, extension_zip: Path) -> None:
    """tools/demo.py's two commands, shortened: targets from the truth, then a fit, both through ``blender -b``."""
    script = blender.install(extension_zip)
    targets = generate_targets(blender, script, 16)
    output = blender.folder / "run"
    completed = batch(
        blender, script, "--config", str(PRESET), "--build-scene", "--targets", str(targets),
        "--output", str(output), "--steps", "6", "--batch-size", "8", "--resolution", "32",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stdout[-4000:]
    assert_clean(completed.stdout)
    assert "Saved:" not in completed.stdout  # renders are silent; one line per step
    result = json.loads((output / "result.json").read_text())
    assert result["renders"] == 6 * 8
    assert len(result["history"]) == 6
    start = {"m1": 1.2, "m2": 3.0}
    for label, values in result["parameters"].items():
        assert values["mu"] != pytest.approx(start[label], abs=1e-6)  # it learned something
    assert (output / "checkpoint.pt").is_file() and (output / "parameters.png").is_file()


def test_batch_exit_codes_in_real_blender(blender: RealBlender, extension_zip: Path) -> None:
    """Bad input exits 1 with one line, a bad command line 2; a Python exception never exits 0."""
    script = blender.install(extension_zip)
    missing = batch(blender, script, "--config", str(PRESET), "--build-scene", "--targets", "/nonexistent/x")
    assert missing.returncode == 1, missing.stdout[-3000:]
    assert "scenefit: error:" in missing.stdout
    assert "Traceback" not in missing.stdout

    bad_config = blender.folder / "bad.json"
    bad_config.write_text("{not json")
    broken = batch(blender, script, "--config", str(bad_config), "--targets", "/tmp")
    assert broken.returncode == 1, broken.stdout[-3000:]
    assert "scenefit: error:" in broken.stdout

    usage = batch(blender, script, "--steps", "many")
    assert usage.returncode == 2, usage.stdout[-3000:]

    # A bug (an exception escaping SceneFit's main) must not look like success either.
    crash = blender.folder / "crash.py"
    crash.write_text(
        "import importlib, runpy, sys\n"
        f"batch = importlib.import_module('{MODULE}.addon.blender.run.batch')\n"
        "def boom(*args): raise RuntimeError('on purpose')\n"
        "batch._run = boom\n"
        f"sys.argv = [sys.argv[0], '--', '--steps', '1']\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
    )
    crashed = blender.run("-b", "-P", str(crash), "--python-exit-code", "1")
    assert crashed.returncode != 0, crashed.stdout[-3000:]
    assert "on purpose" in crashed.stdout


@pytest.mark.parametrize("workers", [1, 2], ids=["in-process", "2-workers"])
def test_panel_driven_for_real_under_xvfb(blender: RealBlender, extension_zip: Path, workers: int) -> None:
    """A user's session in the real UI (tests/real_blender_ui.py): every check passes and the console is clean —
    rendering in the UI's own process, and with 2 render workers (the running Blender's binary, ``-b``)."""
    script = blender.install(extension_zip)
    count = 8
    targets = generate_targets(blender, script, count)
    start = blender.folder / "start.blend"
    blender.python(f"import bpy; bpy.ops.wm.save_as_mainfile(filepath={str(start)!r})")
    config = {
        "targets": str(targets),
        "target_count": count,
        "output": str(blender.folder / "ui-run"),
        "saved": str(blender.folder / "saved-during-run.blend"),
        "screenshot": str(blender.folder / "screen.png"),
        "report": str(blender.folder / "report.json"),
        "timeout": 420,
        "workers": workers,
    }
    report, log = drive_ui(blender, start, config)
    assert len(report["checks"]) >= 20
    assert not re.search(r"^Saved: .*\.tga", log, re.MULTILINE), "training renders print to the console"
    assert not re.search(r"^\s*Time: \d", log, re.MULTILINE), "training renders print to the console"

    # The file saved during the run holds the user's values, not a sample.
    saved = blender.python(
        "import bpy, json; s = bpy.context.window.scene if bpy.context.window else bpy.data.scenes[-1];"
        "s = next(x for x in bpy.data.scenes if len(x.scenefit.specs));"
        "print('SAVED', json.dumps({p.label: bpy.data.objects[p.id_name].path_resolve(p.data_path)"
        " for p in s.scenefit.specs}))",
        config["saved"],
    )
    values = json.loads(saved.split("SAVED ", 1)[1].splitlines()[0])
    assert values == report["user_values"]

    picture = os.environ.get("SCENEFIT_SCREENSHOT")  # e.g. docs/panel.png: the README's picture
    if picture:
        save_panel_picture(Path(config["screenshot"]), report["screenshot"], Path(picture))


def drive_ui(blender: RealBlender, start: Path, config: dict) -> tuple[dict, str]:
    """Open ``start`` in the real UI under Xvfb with tests/real_blender_ui.py driving it (``config``); the driver's
    report and the console log, once every check passed and the console is clean."""
    shutil.copy(ROOT / "tests" / "real_blender_ui.py", blender.folder / "driver.py")
    (blender.folder / "config.json").write_text(json.dumps(config))
    display = 100 + os.getpid() % 400
    # Only the user's session simulates events (Esc). With event simulation Blender's event loop skips its idle
    # sleep and spins a whole core, which a user's Blender does not: the timing runs go without it.
    simulate = "" if config.get("mode") == "rate" else "--enable-event-simulate "
    session = (
        f"Xvfb :{display} -screen 0 1500x1700x24 -nolisten tcp & xvfb=$!; "
        f"for i in $(seq 50); do [ -e /tmp/.X11-unix/X{display} ] && break; sleep 0.1; done; "
        f"DISPLAY=:{display} timeout {config['timeout'] + 60} blender {simulate}{start} "
        f"-P {blender.folder / 'driver.py'} -- {blender.folder / 'config.json'}; rc=$?; "
        "kill $xvfb; wait $xvfb; exit $rc"
    )
    timeout = config["timeout"] + 120
    completed = in_root(blender.folder, "env", f"HOME={blender.home}", "bash", "-c", session, timeout=timeout)
    log = completed.stdout
    (blender.folder / "console.log").write_text(log)
    assert Path(config["report"]).is_file(), f"the driver wrote no report (exit {completed.returncode}):\n{log[-6000:]}"
    report = json.loads(Path(config["report"]).read_text())
    assert report["error"] is None, report["error"] + "\n" + "\n".join(report["events"])
    failed = [c for c in report["checks"] if not c["ok"]]
    assert not failed, json.dumps(failed, indent=1, ensure_ascii=False)
    assert_clean(log)
    return report, log


# DESIGN.md and issue #14 ask an interactive run for ≥ 0.9× the images/s of the same run headless. Each UI run is
# compared with the headless run just before it (the machine's load drifts over minutes, and these 2 cores are
# shared), and the guard holds for the median of those ratios: one pair disturbed either way moves it little.
# best ÷ best did not: in one fresh-clone CI run a single headless run at 114.7 images/s (its others 87.5–97.8) put
# it at 0.81 while the pairs' median was 0.92. Measured (bench/README.md, "The interactive run"): medians 0.92–1.00;
# before the targets were read into scratch data (8 viewport redraws at each start) 0.83–0.90, before the render
# workers 0.08.
UI_RATE_GUARD = 0.9


def rate_figures(rates: dict) -> dict:
    """Per kind ("ui", "headless") and worker count: each run's images/s and the best; per worker count: each UI
    run's ratio to the headless run before it, their median and best ÷ best."""
    figures: dict = {
        kind: {workers: {"best": max(found), "all": found} for workers, found in rates[kind].items()}
        for kind in ("ui", "headless")
    }
    figures["ratio"] = {}
    for workers, ui in rates["ui"].items():
        pairs = [u / h for u, h in zip(ui, rates["headless"][workers], strict=True)]
        figures["ratio"][workers] = {
            "median_of_pairs": statistics.median(pairs),
            "pairs": [round(ratio, 3) for ratio in pairs],
            "best_over_best": max(ui) / max(rates["headless"][workers]),
        }
    return figures


def test_ui_run_with_workers_against_the_headless_images_per_s(blender: RealBlender, extension_zip: Path) -> None:
    """The same run (the supershape preset, 8 × 32 px images a step, 2 render workers) from the panel in the real UI
    and through ``blender -b -P scenefit_batch.py``, alternating seven times (the driver starts the headless runs
    while the UI waits): the median of the UI's images/s over the headless run's before it is at least
    UI_RATE_GUARD, the 3D Viewport is drawn at most 3 times a run (the driver checks), and both learn the same values.
    Each rate is result.json's images_per_s (from the end of the first batch: the workers' start-up left out). Once
    in-process too, reported only: without workers the UI renders on its main thread between redraws. Reported too:
    the cores the interface's own threads used while the rate was measured, and how often its 0.2 s timer fired."""
    script = blender.install(extension_zip)
    targets = generate_targets(blender, script, 8)
    start = blender.folder / "start.blend"
    blender.python(f"import bpy; bpy.ops.wm.save_as_mainfile(filepath={str(start)!r})")
    config = {
        "mode": "rate",
        "targets": str(targets),
        "output": str(blender.folder / "runs"),
        "report": str(blender.folder / "report.json"),
        "batch_script": str(script),
        "preset": str(PRESET),
        "workers": 2,
        "rounds": int(os.environ.get("SCENEFIT_UI_RATE_ROUNDS", "7")),
        "steps": int(os.environ.get("SCENEFIT_UI_RATE_STEPS", "60")),
        "in_process_steps": 4,
        "timeout": 900,
    }
    report, _log = drive_ui(blender, start, config)
    rates = report["rates"]
    figures = rate_figures(rates)
    print(f"images/s UI vs headless: {json.dumps(figures)}")
    print(f"the interface's 0.2 s timer during the UI runs: {report['ui_timer']}")
    print(f"cores the interface used while images/s was measured: {report.get('ui_steady_cores')}")
    figures_file = os.environ.get("SCENEFIT_UI_RATE_JSON")  # bench/workers.py --ui reads the figures from here
    if figures_file:
        measured = {
            "figures": figures,
            "timer": report["ui_timer"],
            "steady_cores": report.get("ui_steady_cores", []),
            "config": config,
        }
        Path(figures_file).write_text(json.dumps(measured, indent=1))
    assert all(rates["same_values"]), rates["same_values"]  # one seed, one run: UI or headless, workers or not
    assert len(rates["ui"]["2"]) == len(rates["headless"]["2"]) == config["rounds"]
    assert figures["ratio"]["2"]["median_of_pairs"] >= UI_RATE_GUARD, figures


def save_panel_picture(shot: Path, where: dict, target: Path) -> None:
    """The right part of the 3D Viewport with the SceneFit sidebar, cropped from the screenshot, as a small PNG."""
    from PIL import Image

    image = Image.open(shot)
    _width, height = where["window"]
    x, y, w, h = where["sidebar"]
    ax, ay, _aw, ah = where["area"]
    left = max(ax, x - 420)
    box = (left, height - (ay + ah), x + w, height - ay)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.crop(box).convert("RGB").quantize(colors=128).save(target, optimize=True)


def test_batch_workers_in_real_blender_learn_what_one_process_learns(blender: RealBlender, extension_zip: Path) -> None:
    """Workers started from a real Blender are that Blender's own binary (``-b``), each on a snapshot of the scene
    the preset built (never saved by the user): 2 of them learn exactly what one process learns, and none is left."""
    script = blender.install(extension_zip)
    targets = generate_targets(blender, script, 8)
    learned = {}
    for workers in ("1", "2"):
        output = blender.folder / f"run{workers}"
        completed = batch(
            blender, script, "--config", str(PRESET), "--build-scene", "--targets", str(targets),
            "--output", str(output), "--steps", "3", "--batch-size", "8", "--resolution", "32", "--workers", workers,
        )  # fmt: skip
        assert completed.returncode == 0, completed.stdout[-4000:]
        assert_clean(completed.stdout)
        learned[workers] = json.loads((output / "result.json").read_text())
    assert "workers      2 processes" in completed.stdout
    assert learned["2"]["parameters"] == learned["1"]["parameters"]
    assert [e["values"] for e in learned["2"]["history"]] == [e["values"] for e in learned["1"]["history"]]
    # The root shares this machine's processes (a mount namespace only): none with this test's HOME is left.
    home = f"HOME={blender.home}".encode()
    assert not [path.parent.name for path in Path("/proc").glob("[0-9]*/environ") if home in _environment(path)]


def _environment(path: Path) -> list[bytes]:
    try:
        return path.read_bytes().split(b"\0")
    except OSError:  # the process ended meanwhile
        return []
