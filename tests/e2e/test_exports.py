"""Exports over HTTP against the running service: run bundle, GIF and MP4 grids, bad parameters."""

from __future__ import annotations

import io
import json
import zipfile

import httpx
import imageio.v3 as iio
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from tests.e2e.helpers import RUN_SPEC, screenshot


def export(service, job_id: str, name: str, **params) -> httpx.Response:
    return httpx.get(f"{service.url}/api/jobs/{job_id}/export/{name}", params=params, timeout=60)


def test_bundle_zip_holds_the_whole_run_directory(service, client, finished_run):
    r = export(service, finished_run.id, "bundle.zip")
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    assert f'filename="stepscope-{finished_run.id}.zip"' in r.headers["content-disposition"]
    archive = zipfile.ZipFile(io.BytesIO(r.content))
    assert archive.testzip() is None
    root = f"stepscope-{finished_run.id}/"
    names = archive.namelist()
    assert all(n.startswith(root) for n in names)
    assert sorted(n.removeprefix(root) for n in names) == sorted(client.files(finished_run.id))
    assert json.loads(archive.read(root + "manifest.json")) == client.manifest(finished_run.id)
    preview = finished_run.manifest["trajectories"]["baseline"]["steps"][0]["artifacts"]["preview"]
    assert archive.read(root + preview) == client.artifact(finished_run.id, preview)
    assert archive.getinfo(root + preview).compress_type == zipfile.ZIP_STORED
    assert archive.getinfo(root + "manifest.json").compress_type == zipfile.ZIP_DEFLATED


def test_gif_grid_has_one_frame_per_captured_step(service, client, finished_run):
    steps = finished_run.manifest["trajectories"]["baseline"]["steps"]
    r = export(service, finished_run.id, "grid.gif", scale=4, fps=5)
    assert r.status_code == 200 and r.headers["content-type"] == "image/gif"
    gif = Image.open(io.BytesIO(r.content))
    assert gif.n_frames == len(steps) == RUN_SPEC["steps"]
    strip = Image.open(io.BytesIO(client.artifact(finished_run.id, steps[0]["artifacts"]["preview"])))
    assert gif.size == (strip.width * 4, strip.height * 4 + 18)  # the strip upscaled, plus its caption
    assert gif.info["duration"] == 200
    # The first frame's strip is the first step's preview, upscaled by 4 (up to GIF's palette).
    gif.seek(0)
    shown = np.asarray(gif.convert("RGB"))[: strip.height * 4 : 4, ::4].astype(int)
    assert np.abs(shown - np.asarray(strip.convert("RGB")).astype(int)).mean() < 6


def test_gif_grid_stacks_trajectories_and_ensemble_members(service, client, finished_run):
    r = export(service, finished_run.id, "grid.gif", trajectories="baseline,ens", scale=2)
    assert r.status_code == 200
    gif = Image.open(io.BytesIO(r.content))
    base = Image.open(io.BytesIO(client.artifact(finished_run.id, "trajectories/baseline/preview/step_000.png")))
    ens = Image.open(io.BytesIO(client.artifact(finished_run.id, "trajectories/ens/preview/step_000.png")))
    assert ens.height == 3 * base.height  # three seeds stacked
    assert gif.size == (96 + base.width * 2, (base.height + ens.height) * 2 + 18)
    assert gif.n_frames == RUN_SPEC["steps"]


def test_mp4_grid_has_one_frame_per_captured_step(service, finished_run):
    r = export(service, finished_run.id, "grid.mp4", trajectories="baseline,noise3", fps=8)
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert r.content[4:8] == b"ftyp"
    frames = list(iio.imiter(r.content, extension=".mp4"))
    assert len(frames) == RUN_SPEC["steps"]


@pytest.mark.parametrize(
    ("name", "params", "status", "field"),
    [
        ("grid.gif", {"scale": 0}, 422, "scale"),
        ("grid.gif", {"scale": 17}, 422, "scale"),
        ("grid.gif", {"scale": "big"}, 422, "scale"),
        ("grid.gif", {"fps": 0}, 422, "fps"),
        ("grid.gif", {"fps": 31}, 422, "fps"),
        ("grid.mp4", {"fps": 2.5}, 422, "fps"),
        ("grid.gif", {"trajectories": "nope"}, 422, "trajectories"),
        ("grid.mp4", {"trajectories": "baseline,baseline"}, 422, "trajectories"),
        ("grid.gif", {"trajectories": " , "}, 422, "trajectories"),
    ],
)
def test_bad_export_parameters_are_refused_naming_the_field(service, finished_run, name, params, status, field):
    r = export(service, finished_run.id, name, **params)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["field"] == field and body["detail"].startswith(f"{field}: ")


def test_exports_of_unknown_or_unstarted_jobs(service):
    for name in ("bundle.zip", "grid.gif", "grid.mp4"):
        r = export(service, "0123456789abcdef", name)
        assert r.status_code == 404 and r.json()["field"] == "job_id"
    queued = httpx.post(f"{service.url}/api/jobs", json={**RUN_SPEC, "model": "tiny-moe"}).json()  # no worker serves it
    try:
        r = export(service, queued["id"], "grid.gif")
        assert r.status_code == 404 and "has not started" in r.json()["detail"]
    finally:
        httpx.post(f"{service.url}/api/jobs/{queued['id']}/cancel")


@pytest.mark.browser
def test_export_menu_links_download_the_files(page, service, finished_run):
    page.goto(f"{service.url}/#/jobs/{finished_run.id}")
    page.wait_for_selector("#job-status.status-finished")
    page.click("#export-menu summary")
    page.check("#export-trajectories input[value='noise3']")
    page.select_option("#export-scale", "2")
    # The link follows the menu's choices.
    gif = f"/api/jobs/{finished_run.id}/export/grid.gif?trajectories=baseline%2Cnoise3&fps=4&scale=2"
    expect(page.locator("#export-gif")).to_have_attribute("href", gif)
    with page.expect_download() as download:
        page.click("#export-gif")
    frames = Image.open(download.value.path())
    assert frames.n_frames == RUN_SPEC["steps"]
    with page.expect_download() as download:
        page.click("#export-bundle")
    names = zipfile.ZipFile(download.value.path()).namelist()
    assert f"stepscope-{finished_run.id}/manifest.json" in names
    screenshot(page, "export_menu")
