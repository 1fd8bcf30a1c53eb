import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
NEWS_SAMPLE = SHARED / "fixtures" / "News_Sample_data.xlsx"


@pytest.fixture
def news_sample() -> Path:
    """The seed project's own Excel file, read from ../shared (never copied into the project)."""
    if not NEWS_SAMPLE.is_file():
        pytest.skip(f"{NEWS_SAMPLE} not found: clone the project beside ../shared to run this")
    return NEWS_SAMPLE


BIN = Path(sys.executable).parent

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ["DVC_NO_ANALYTICS"] = "1"


def command_env() -> dict[str, str]:
    """The environment a user's shell has after `make install`: the venv's bin first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.pop("PYTHONPATH", None)
    return env


def run(
    args: list[str],
    cwd: Path,
    check: bool = True,
    timeout: float | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run a command; past `timeout` seconds its whole process group is killed."""
    process = start(args, cwd, env)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop(process)
        raise AssertionError(f"{' '.join(args)} did not finish in {timeout} s") from None
    result = subprocess.CompletedProcess(args, process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def start(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A command in a process group of its own, so that `stop` can end it and its children."""
    return subprocess.Popen(
        args,
        cwd=cwd,
        env={**command_env(), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


def copy_project(dest: Path) -> Path:
    """The project's tracked files (no .venv, data/, models/ or DVC cache) in a new git repo."""
    tracked = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\0")
    for name in filter(None, tracked):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    run(["git", "init", "-q", "-b", "main"], dest)
    run(["git", "config", "user.name", "bertclf tests"], dest)
    run(["git", "config", "user.email", "tests@bertclf.invalid"], dest)
    return dest


def stages_run(output: str) -> set[str]:
    """Stages DVC ran, counting a restore from its run cache as a run."""
    return set(re.findall(r"Running stage '([^']+)'", output)) | set(
        re.findall(r"Stage '([^']+)' is cached - skipping run", output)
    )


def commit_all(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", message], repo)


@pytest.fixture(scope="session")
def dag_repo(tmp_path_factory) -> Path:
    """One tiny-model build of the whole DAG, shared by the end-to-end tests."""
    repo = copy_project(tmp_path_factory.mktemp("dag") / "project")
    run(["bertclf", "params", *TINY], repo)
    commit_all(repo, "tiny model")
    result = run(["dvc", "repro"], repo)
    (repo / "first_repro.log").write_text(result.stdout + result.stderr)
    commit_all(repo, "built")
    run(["git", "tag", "built"], repo)
    return repo


TINY = ["model=tiny", "train.epochs=1", "tokenize.max_length=128"]


def restore(repo: Path) -> None:
    """Back to the shared build's commit and outputs (HEAD, not the index: DVC autostages)."""
    run(["git", "reset", "-q", "--hard", "built"], repo)
    run(["git", "clean", "-q", "-fd", "reports"], repo)
    run(["dvc", "checkout", "-q", "--force"], repo)
    assert "up to date" in run(["dvc", "status"], repo).stdout
