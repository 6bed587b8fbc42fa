"""The README and docs/: generated parts up to date, links that resolve, commands that work when pasted."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from docs import build
from stages.lib.core.params import Params
from stages.lib.core.params_model import Dimension
from tests.helpers import REPO_ROOT, child_env, copy_repo, customers_to_score, dvc

PAGES = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 300


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings (outside code blocks)."""
    anchors, fenced = set(), False
    for line in page.read_text().splitlines():
        fenced ^= line.startswith("```")
        heading = re.match(r"#+ (.*)", line)
        if heading and not fenced:
            anchors.add(re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-"))
    return anchors


def _consistent(read):
    """A reader of the last commit in which every generated part is what its sources give (so that the test
    holds in any workspace the README's daily loop leaves, whose committed metrics may be newer than its docs)."""
    fresh = {path: update(read(path)) for path, update in build.generated(read).items()}
    return lambda path: fresh.get(path) if path in fresh else read(path)


def test_a_changed_source_makes_its_generated_part_stale():
    """`python -m docs.build --check`, which .ci/run calls on the repository itself, fails exactly when a
    generated part no longer matches its source."""
    base = _consistent(build.committed)
    assert build.stale(base) == []

    def with_better_metrics(path: str) -> str:
        if path != "metrics/metrics.json":
            return base(path)
        metrics = json.loads(base(path))
        metrics["average_precision"] += 0.05
        return json.dumps(metrics)

    assert build.headline_metrics(base) in base("README.md")
    assert build.stale(with_better_metrics) == ["README.md"]


def test_the_sentence_about_the_search_edges_is_written_from_the_committed_tune_metrics():
    base = _consistent(build.committed)

    def with_edges(edges):
        def read(path: str) -> str:
            if path != "metrics/tune.json":
                return base(path)
            tune = json.loads(base(path))
            tune["lightgbm"]["edges"] = edges
            return json.dumps(tune)
        return read

    assert "on no edge" in build.search_edges(with_edges({}))
    said = build.search_edges(with_edges({"reg_lambda": "high", "min_child_samples": "low"}))
    assert "at the high end of `reg_lambda`, the low end of `min_child_samples`" in said and "no edge" not in said
    committed = json.loads(base("metrics/tune.json"))["lightgbm"]["edges"]
    assert build.stale(with_edges({"learning_rate": "low"} if not committed else {})) == ["docs/experiments.md"]


def test_the_docs_take_the_latest_result_their_reader_has():
    """A benchmark result a user has just run and not committed is passed over when the docs are checked
    against the last commit (the tests above), and taken when they are built from the working tree; so is
    the result of a stopped run."""
    newest, _ = build.latest("scoring-1m")

    def without_newest(path: str) -> str:
        if path == newest:
            raise OSError(f"{path}: not in this reader")
        return build.working_tree(path)

    def newest_stopped(path: str) -> str:
        result = json.loads(build.working_tree(path))
        return json.dumps({**result, "complete": False}) if path == newest else json.dumps(result)

    older, _ = build.latest("scoring-1m", without_newest)
    assert older != newest and older.startswith(f"{build.RESULTS}/{build.TIMINGS_ON}/")
    assert build._commit_order().get(older.split("/")[-2], 10**9) >= build._commit_order().get(
        newest.split("/")[-2], 10**9)
    assert build.latest("scoring-1m", newest_stopped)[0] == older


def _tracked() -> set[Path]:
    """The files git tracks, and their folders: what a fresh clone has."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    files = {REPO_ROOT / name for name in listed.decode().split("\0") if name}
    return files | {folder for file in files for folder in file.parents}


def test_every_link_in_the_readme_and_docs_resolves_in_a_fresh_clone():
    tracked, broken = _tracked(), []
    for page in PAGES:
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            if re.match(r"[a-z]+://", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif linked not in tracked:
                broken.append(f"{page.name}: {target} (not tracked by git: ignored or not added)")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readme_is_short():
    assert len((REPO_ROOT / "README.md").read_text().splitlines()) <= README_MAX_LINES


def test_every_param_is_described_once_in_its_model_and_documented_on_the_generated_page():
    page = (REPO_ROOT / "docs/parameters.md").read_text()
    for section, field in Params.model_fields.items():
        assert field.annotation.__doc__, section
        for key, described in field.annotation.model_fields.items():
            assert described.description, f"{section}.{key} has no description in stages/lib/core/params.py"
            assert f"| `{section}.{key}` |" in page
    assert all(described.description for described in Dimension.model_fields.values())
    # Nowhere else: no other page has a table of params and their meanings (params.yaml's comments are
    # generated from the same descriptions: test_every_generated_part_is_up_to_date).
    for other in [p for p in PAGES if p.name != "parameters.md"]:
        assert not re.search(r"^\| key \|.*\| meaning \|", other.read_text(), re.MULTILINE), other.name


def _runnable_blocks(page: Path) -> list[str]:
    """The fenced shell blocks marked `<!-- runnable -->` on a page, in page order."""
    return re.findall(r"<!-- runnable -->\n```bash\n(.*?)```", page.read_text(), re.DOTALL)


def test_the_pages_mark_runnable_blocks():
    assert _runnable_blocks(REPO_ROOT / "README.md")
    assert sum(len(_runnable_blocks(page)) for page in PAGES) >= 5


@pytest.mark.e2e
@pytest.mark.subprocess
@pytest.mark.parametrize("page", [p for p in PAGES if _runnable_blocks(p)], ids=lambda p: p.name)
def test_the_runnable_blocks_work_when_pasted(page, reproduced_repo, tmp_path):
    """Each page's runnable blocks, in order, in a copy of a reproduced repository with a table to score and
    a remote of its own holding the model: every command exits 0."""
    repo = copy_repo(reproduced_repo, tmp_path / "repo")
    customers_to_score(repo, repo / "customers.csv")
    dvc("remote", "modify", "--local", "local", "url", str(tmp_path / "remote"), cwd=repo)
    dvc("push", "-q", cwd=repo)
    for model_file in ("preprocessor.joblib", "model.joblib", "calibrator.joblib", "threshold.json"):
        (repo / "models" / model_file).unlink()  # `dvc pull` must bring them back
    env = child_env()
    for block in _runnable_blocks(page):
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=repo, env=env, text=True,
                                capture_output=True, timeout=600)
        assert result.returncode == 0, f"{page.name}:\n{block}\n{result.stdout}\n{result.stderr}"
    # What the blocks leave: no stray error, and the repository still reproduces.
    assert "error" not in dvc("status", cwd=repo).stdout.lower()
