"""Packaging round trip: ``python -m build`` makes an sdist and a wheel; the wheel installs into a fresh
venv where ``ykcproxy --help``, ``twistd ykcproxy --help`` and ``ykcproxy-sim --help`` work.

Offline and fast: the build runs without isolation (``setuptools`` and
``wheel`` come with the test extra), and the fresh venv reaches the
dependencies through a ``.pth`` line naming this venv's site-packages
(a plain path line: this venv's own ``.pth`` files, such as an editable
install of the work tree, are not run), while the wheel is installed into
the fresh venv itself with ``--no-deps --no-index``.  A few seconds.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import tarfile
import zipfile

from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.daemon import ROOT
from ykcproxy import __version__

ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


class RoundTrip(TestCase):
    timeout = 120

    @inlineCallbacks
    def run_ok(self, argv: list[str], cwd: str):
        out, err, code = yield getProcessOutputAndValue(argv[0], argv[1:], env=ENV, path=cwd)
        self.assertEqual(code, 0, f"{argv}:\n{out.decode()}\n{err.decode()}")
        return out.decode()

    @inlineCallbacks
    def test_build_install_run(self):
        work = os.path.abspath(self.mktemp())
        os.makedirs(work)
        dist = os.path.join(work, "dist")
        yield self.run_ok([sys.executable, "-m", "build", "--no-isolation", "--outdir", dist, ROOT], work)
        names = sorted(os.listdir(dist))
        expected = [f"ykcproxy-{__version__}-py3-none-any.whl", f"ykcproxy-{__version__}.tar.gz"]
        self.assertEqual(names, expected)
        wheel, sdist = (os.path.join(dist, n) for n in names)

        with tarfile.open(sdist) as tar:
            members = {m.split("/", 1)[1] for m in tar.getnames() if "/" in m}
        for path in (
            "LICENSE",
            "CHANGELOG.md",
            "contrib/ykcproxy.toml",
            "contrib/systemd/ykcproxy.service",
            "doc/configuration.md",
            "twisted/plugins/ykcproxy_plugin.py",
        ):
            self.assertIn(path, members)
        with zipfile.ZipFile(wheel) as zf:
            files = set(zf.namelist())
        self.assertIn("twisted/plugins/ykcproxy_plugin.py", files)
        # Twisted's own package must not be shadowed by ours.
        self.assertNotIn("twisted/plugins/__init__.py", files)
        self.assertNotIn("twisted/__init__.py", files)
        self.assertTrue(any(f.endswith("/LICENSE") for f in files))

        fresh = os.path.join(work, "fresh")
        yield self.run_ok([sys.executable, "-m", "venv", "--without-pip", fresh], work)
        python = os.path.join(fresh, "bin", "python")
        purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        site = yield self.run_ok([python, "-c", purelib], work)
        with open(os.path.join(site.strip(), "_test_dependencies.pth"), "w") as f:
            f.write(sysconfig.get_paths()["purelib"] + "\n")
        yield self.run_ok(
            [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed", wheel],
            work,
        )

        where = yield self.run_ok([python, "-c", "import ykcproxy; print(ykcproxy.__file__)"], work)
        self.assertTrue(where.strip().startswith(fresh), where)
        bin_dir = os.path.join(fresh, "bin")
        out = yield self.run_ok([os.path.join(bin_dir, "ykcproxy"), "--help"], work)
        self.assertIn("--autoVerification", out)
        out = yield self.run_ok([os.path.join(bin_dir, "ykcproxy"), "--version"], work)
        self.assertEqual(out.strip(), f"ykcproxy {__version__}")
        twistd = [python, "-c", "from twisted.scripts.twistd import run; run()"]
        out = yield self.run_ok([*twistd, "ykcproxy", "--help"], work)
        self.assertIn("--autoVerification", out)
        out = yield self.run_ok([os.path.join(bin_dir, "ykcproxy-sim"), "--help"], work)
        self.assertIn("--piles", out)
