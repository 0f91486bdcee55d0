"""The plot routes and `netgrow plot`: the pictures are the stored data drawn by app.plots.

A picture served for a job is compared byte for byte with the picture app.plots
draws from the history and events the API serves for the same job (and
tests/plots checks that app.plots draws that data: step points equal to the
widths, and so on). The same holds for `netgrow plot` on files and on job ids.
"""
from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import httpx
import pytest

from api_support import REPO, LiveApi, dense_spec, read_events, smoke_spec, wait_finished
from app import plots
from app.cli import main
from growth.events import ArchitectureChanged, EpochEnd, UnitStat

pytestmark = pytest.mark.service

RESULTS = REPO / "bench" / "results"


def expected_job_plot(client: httpx.Client, job_id: str, name: str, fmt: str) -> bytes:
    """What app.plots draws from the job's history and architecture events as the API serves them."""
    job = client.get(f"/v1/jobs/{job_id}").json()
    history = client.get(f"/v1/jobs/{job_id}/history").json()["epochs"]
    last = history[-1]["epoch"] if history else -1
    # A change is recorded with its epoch and streamed before it, so the stream up to the last
    # recorded epoch holds every change the history has (a running job's stream does not end).
    messages = read_events(client, job_id, stop=lambda m: m.event == "epoch" and m.json()["epoch"] == last)
    changes = [m.json() for m in messages if m.event == "architecture"]
    drawn = plots.read_history(job["method"], history, changes, spec=job["spec"])
    return plots.render_job_plot(name, drawn, fmt)  # type: ignore[arg-type]


@pytest.fixture
def finished_jobs(embedded_api: LiveApi) -> tuple[httpx.Client, str, str]:
    """A grown smoke job and its dense baseline, finished."""
    client = embedded_api.user("alice")
    grow = client.post("/v1/jobs", json=smoke_spec()).json()["id"]
    dense = client.post("/v1/jobs", json=dense_spec()).json()["id"]
    for job_id in (grow, dense):
        assert wait_finished(client, job_id)["status"] == "succeeded"
    return client, grow, dense


def test_job_plots_are_the_stored_history_drawn(finished_jobs: tuple[httpx.Client, str, str]) -> None:
    client, grow, _ = finished_jobs
    epochs = len(client.get(f"/v1/jobs/{grow}/history").json()["epochs"])
    for name in plots.JOB_PLOTS:
        for fmt, media_type in plots.MEDIA_TYPES.items():
            response = client.get(f"/v1/jobs/{grow}/plots/{name}.{fmt}")
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == media_type
            assert response.headers["x-plot-epochs"] == str(epochs)
            assert response.content == expected_job_plot(client, grow, name, fmt), f"{name}.{fmt}"
    svg = client.get(f"/v1/jobs/{grow}/plots/timeline.svg").text
    assert 'id="width-conv1"' in svg and 'id="widen-' in svg  # the smoke job grows: its change is marked


def test_the_comparison_chart_draws_the_finished_jobs(finished_jobs: tuple[httpx.Client, str, str]) -> None:
    client, grow, dense = finished_jobs
    jobs = [client.get(f"/v1/jobs/{job_id}").json() for job_id in (dense, grow)]
    points = [plots.RunPoint(job["method"], job["metrics"]["params"], job["metrics"]["macs"],
                             job["metrics"]["test_accuracy"]) for job in jobs]
    for measure in plots.MEASURES:
        response = client.get("/v1/compare/plot.svg", params={"ids": f"{dense},{grow}", "measure": measure})
        assert response.status_code == 200 and response.headers["content-type"] == "image/svg+xml"
        assert response.content == plots.render_comparison(points, measure, "svg")
    png = client.get("/v1/compare/plot.png", params={"ids": f"{dense},{grow}"})
    assert png.content == plots.render_comparison(points, "params", "png")


def test_a_running_jobs_plots_grow_with_its_history(queue_api: LiveApi) -> None:
    """No worker runs here: the job's epochs are recorded through the job store's own write path."""
    from worker.store import jobs
    from worker.store.session import session_scope

    client = queue_api.user("carol")
    job_id = client.post("/v1/jobs", json=smoke_spec()).json()["id"]
    url = queue_api.settings.database_url
    with session_scope(url) as session:
        assert jobs.claim_job(session, uuid.UUID(job_id), lease_owner="test/1", worker="test", lease_seconds=600)

    def record(epoch: int, widths: tuple[int, int], grew: tuple[int, int] = (0, 0)) -> None:
        units = [UnitStat(name, width, width // 2, 0.5, extra) for name, width, extra in
                 zip(("conv1", "conv2"), widths, grew)]
        changes = [ArchitectureChanged(epoch, "widen", {name: [width, width + extra] for name, width, extra in
                                                        zip(("conv1", "conv2"), widths, grew) if extra},
                                       spec={"family": "vgg", "layers": [w + g for w, g in zip(widths, grew)]})
                   ] if any(grew) else []
        with session_scope(url) as session:
            assert jobs.record_epoch(session, uuid.UUID(job_id), lease_owner="test/1", lease_seconds=600,
                                     changes=changes, epoch=EpochEnd(
                                         epoch=epoch, phase="grow", train_loss=1.0 / (epoch + 1), val_accuracy=0.5,
                                         lr=0.1, params=100 + epoch, macs=1000, seconds=0.1, units=units))

    empty = client.get(f"/v1/jobs/{job_id}/plots/timeline.svg")
    assert empty.status_code == 200 and empty.headers["x-plot-epochs"] == "0"
    assert b"no epoch recorded yet" in empty.content
    record(0, (4, 4))
    record(1, (4, 4), grew=(4, 0))
    first = client.get(f"/v1/jobs/{job_id}/plots/timeline.svg")
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
    assert first.headers["x-plot-epochs"] == "2" and 'id="widen-2"' in first.text
    assert first.content == expected_job_plot(client, job_id, "timeline", "svg")
    record(2, (8, 4))
    second = client.get(f"/v1/jobs/{job_id}/plots/timeline.svg")
    assert second.headers["x-plot-epochs"] == "3" and second.content != first.content
    assert second.content == expected_job_plot(client, job_id, "timeline", "svg")
    curves = client.get(f"/v1/jobs/{job_id}/plots/curves.png")
    assert curves.content == expected_job_plot(client, job_id, "curves", "png")
    # A comparison needs finished jobs.
    unfinished = client.get("/v1/compare/plot.svg", params={"ids": job_id})
    assert unfinished.status_code == 409 and "only succeeded jobs" in unfinished.json()["detail"]


def test_bad_plot_requests_get_a_clear_4xx(queue_api: LiveApi) -> None:
    alice, bob = queue_api.user("alice"), queue_api.user("bob")
    job_id = alice.post("/v1/jobs", json=smoke_spec()).json()["id"]

    unknown = alice.get(f"/v1/jobs/{job_id}/plots/pie.svg")
    assert unknown.status_code == 422
    (error,) = unknown.json()["detail"]
    assert error["loc"] == ["path", "plot"] and "'timeline', 'heatmap' or 'curves'" in error["msg"]
    gif = alice.get(f"/v1/jobs/{job_id}/plots/timeline.gif")
    assert gif.status_code == 422 and gif.json()["detail"][0]["loc"] == ["path", "format"]
    measure = alice.get("/v1/compare/plot.svg", params={"ids": job_id, "measure": "flops"})
    assert measure.status_code == 422 and measure.json()["detail"][0]["loc"] == ["query", "measure"]
    ids = alice.get("/v1/compare/plot.svg", params={"ids": "not-an-id"})
    assert ids.status_code == 422 and ids.json()["detail"][0]["loc"] == ["query", "ids"]

    # Another owner's job is as missing as a job that does not exist.
    assert bob.get(f"/v1/jobs/{job_id}/plots/timeline.svg").status_code == 404
    other = bob.get("/v1/compare/plot.svg", params={"ids": job_id})
    assert other.status_code == 404 and other.json()["detail"] == f"no job {job_id}"
    assert queue_api.client().get(f"/v1/jobs/{job_id}/plots/timeline.svg").status_code == 401


# --------------------------------------------------------------------------- netgrow plot


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_netgrow_plot_draws_result_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    files = [shutil.copy(RESULTS / f"digits-vgg-{name}.result.json", tmp_path / f"{name}.json")
             for name in ("grow", "dense")]
    out = tmp_path / "pictures"
    code, printed, err = run_cli(capsys, "plot", *map(str, files), "--out", str(out), "--format", "both",
                                 "--server", "http://127.0.0.1:1")  # never contacted for files
    assert code == 0, err
    names = {f"{stem}-{plot}.{fmt}" for stem in ("grow", "dense") for plot in plots.JOB_PLOTS for fmt in ("svg", "png")}
    names |= {"comparison.svg", "comparison.png"}
    assert {path.name for path in out.iterdir()} == names
    assert sorted(printed.split()) == sorted(str(out / name) for name in names)
    grown = json.loads(Path(files[0]).read_text())
    assert (out / "grow-timeline.svg").read_bytes() == plots.render_job_plot("timeline", plots.read_result(grown))
    results = [json.loads(Path(path).read_text()) for path in files]
    assert (out / "comparison.png").read_bytes() == plots.render_comparison(
        plots.points_from_results(results), "params", "png")

    code, printed, _ = run_cli(capsys, "plot", str(files[0]), "--out", str(tmp_path / "one"), "--plots", "timeline")
    assert code == 0 and [Path(line).name for line in printed.split()] == ["grow-timeline.svg"]


def test_netgrow_plot_refuses_what_is_not_a_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = REPO / "examples" / "smoke.json"
    code, _, err = run_cli(capsys, "plot", str(spec), "--out", str(tmp_path))
    assert code == 2
    assert err.strip() == (f"error: {spec} is not a netgrow result JSON (the file `netgrow grow --out` writes): "
                           "result.history: is missing: this is not a netgrow result JSON (the file "
                           "`netgrow grow --out` writes)")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(SystemExit, match="is not valid JSON"):
        main(["plot", str(broken), "--out", str(tmp_path)])
    with pytest.raises(SystemExit) as usage:
        main(["plot", str(spec), "--out", str(tmp_path), "--plots", "timeline,pie"])
    assert usage.value.code == 2 and "unknown plot pie" in capsys.readouterr().err
    code, _, err = run_cli(capsys, "plot", str(spec), "00000000-0000-0000-0000-000000000000", "--out", str(tmp_path))
    assert code == 2 and "not both" in err
    assert not list(tmp_path.glob("*.svg"))


def test_netgrow_plot_fetches_job_pictures_from_the_server(finished_jobs: tuple[httpx.Client, str, str],
                                                           embedded_api: LiveApi, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    client, grow, dense = finished_jobs
    monkeypatch.setenv("NETGROW_SERVER", embedded_api.url)
    monkeypatch.setenv("NETGROW_API_KEY", client.headers["authorization"].removeprefix("Bearer "))
    code, printed, err = run_cli(capsys, "plot", grow, dense, "--out", str(tmp_path), "--measure", "macs")
    assert code == 0, err
    assert len(printed.split()) == 7  # three pictures per job and the comparison
    for name in plots.JOB_PLOTS:
        assert (tmp_path / f"{grow}-{name}.svg").read_bytes() == client.get(f"/v1/jobs/{grow}/plots/{name}.svg").content
    assert (tmp_path / "comparison.svg").read_bytes() == client.get(
        "/v1/compare/plot.svg", params={"ids": f"{grow},{dense}", "measure": "macs"}).content

    stranger = embedded_api.key("stranger")
    code, _, err = run_cli(capsys, "plot", grow, "--out", str(tmp_path / "x"), "--key", stranger)
    assert code == 1 and f"HTTP 404: no job {grow}" in err
