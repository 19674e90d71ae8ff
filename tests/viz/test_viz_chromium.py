"""The MLP training step's page in a real browser (headless Chromium): its script runs to the
end, a box named in the address is selected with its details and MLIR shown, and a
screenshot has the window's size. Skipped where no Chromium is installed."""
from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from kiln.cli import load_function, make_inputs, parse_arg_spec
from kiln.viz.collect import collect
from kiln.viz.page import render_html

HERE = Path(__file__).parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
BROWSER = next((b for b in map(shutil.which, BROWSERS) if b), None)
pytestmark = pytest.mark.skipif(
    BROWSER is None, reason=f"no headless browser on PATH (looked for {', '.join(BROWSERS)}; "
    "Debian: apt-get install chromium)")


@pytest.fixture(scope="module")
def picture():
    fn = load_function(HERE / "mlp_step.py", "train_step")
    return collect(fn, make_inputs([parse_arg_spec("f32[32,64]"), parse_arg_spec("i64[32]")]))


@pytest.fixture(scope="module")
def page_file(picture, tmp_path_factory):
    path = tmp_path_factory.mktemp("viz") / "mlp_step.html"
    path.write_text(render_html(picture), encoding="utf-8")
    return path


def _chromium(*flags, url: str, cwd: Path) -> str:
    # NOTE: --no-sandbox: tests may run as root, where Chromium's sandbox refuses to start;
    # the resolver rule makes any network name fail, so the page cannot reach out even if it
    # tried
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--host-resolver-rules=MAP * ~NOTFOUND", *flags, url]
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_script_runs_and_selects_the_box_in_the_address(picture, page_file):
    i = [s.name for s in picture.stages].index("fusion")
    j = [n.op for n in picture.stages[i].graph.nodes].index("kernel")
    box = f"s{i}-n{j}"
    dom = _chromium("--dump-dom", url=page_file.as_uri() + f"#fusion:{box}",
                    cwd=page_file.parent)
    assert 'data-ready="1"' in dom, "the page's script did not run to its end"
    assert f'class="box k-kernel selected" id="{box}"' in dom
    assert f'<section class="stage on" id="stage-{i}" data-name="fusion">' in dom
    assert "<h2>kernel @" in dom and "MLIR of kernel @" in dom and "func.func" in dom


def test_screenshot(page_file):
    shot = page_file.parent / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1200,800",
              url=page_file.as_uri() + "#fusion", cwd=page_file.parent)
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (1200, 800)
    # NOTE: a blank page compresses to a few KB; boxes, text and arrows do not
    assert len(png) > 30_000
