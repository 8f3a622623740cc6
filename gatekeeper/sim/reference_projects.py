"""What the eight reference projects hold in the embedded Gerrit: small stand-ins that the jobs really exercise.

nova and devstack come from gatekeeper.sim.devstack (devstack's exercises boot a server with nova's code);
every project gets a `run_tests.sh` that runs its unit tests with the standard library, so a change that breaks
a project's code fails its unit job, and one that breaks nova's compute also fails the devstack job.
"""

from __future__ import annotations

from gatekeeper.sim.devstack import seed_devstack, seed_files, seed_nova

REFERENCE_PROJECTS = (
    "openstack/nova",
    "openstack/glance",
    "openstack/keystone",
    "openstack/horizon",
    "openstack/python-novaclient",
    "openstack/python-keystoneclient",
    "openstack-dev/devstack",
    "openstack-infra/devstack-gate",
)

RUN_TESTS = """#!/bin/bash
# Unit tests of this stand-in project: every tests/test_*.py, with the standard library's runner.
set -eu
cd "$(dirname "$0")"
echo "run_tests.sh: $(basename "$PWD") at $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
exec python3 -m unittest discover -s tests -t . -v
"""

BASHATE = """#!/bin/bash
# devstack's unit job: every shell script must at least parse (a stand-in for bashate).
set -eu
cd "$(dirname "$0")"
status=0
for f in stack.sh exercise.sh functions exercises/*.sh; do
    if bash -n "$f"; then echo "ok: $f"; else echo "syntax error: $f"; status=1; fi
done
exit $status
"""


def _package(name: str) -> str:
    """The Python package a project's code lives in: python-novaclient -> novaclient, nova -> nova."""
    short = name.rsplit("/", 1)[-1]
    return short.removeprefix("python-").replace("-", "_")


def _stand_in_files(project: str) -> dict[str, tuple[str, bool]]:
    pkg = _package(project)
    version = f'"""{project} stand-in."""\n\nVERSION = "1.0.0"\n\n\ndef describe():\n    return "{pkg} " + VERSION\n'
    test = (
        "import unittest\n\n"
        f"import {pkg}\n\n\n"
        f"class Test{pkg.title().replace('_', '')}(unittest.TestCase):\n"
        "    def test_describe(self):\n"
        f"        self.assertTrue({pkg}.describe().startswith({pkg!r}))\n"
    )
    return {
        f"{pkg}/__init__.py": (version, False),
        "tests/__init__.py": ("", False),
        f"tests/test_{pkg}.py": (test, False),
        "run_tests.sh": (RUN_TESTS, True),
        "README": (f"{project}: a stand-in for gatekeeper's demo gate.\n", False),
    }


NOVA_TESTS = """import unittest

from nova import compute


class TestCompute(unittest.TestCase):
    def test_boot_makes_an_active_server(self):
        self.assertEqual(compute.boot("unit-vm"), "ACTIVE")
"""


def seed_project(project: str, git_dir: str) -> str:
    """Put the stand-in content of `project` on master of the bare repo at `git_dir`; returns the new tip."""
    if project == "openstack/nova":
        seed_nova(git_dir)
        return seed_files(git_dir, {
            "tests/__init__.py": ("", False),
            "tests/test_compute.py": (NOVA_TESTS, False),
            "run_tests.sh": (RUN_TESTS, True),
        }, "Add nova's unit tests")
    if project == "openstack-dev/devstack":
        seed_devstack(git_dir)
        return seed_files(git_dir, {"run_tests.sh": (BASHATE, True)}, "Add a syntax check of the scripts")
    if project == "openstack-infra/devstack-gate":
        return seed_files(git_dir, {
            "README": ("devstack-gate stand-in: the gate's glue lives in gatekeeper's executor now.\n", False),
            "devstack-vm-gate.sh": ("#!/bin/bash\nexec ./stack.sh\n", True),
        }, "Add the devstack-gate stand-in")
    return seed_files(git_dir, _stand_in_files(project), f"Add the {project} stand-in")
