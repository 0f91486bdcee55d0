"""Client commands that move files: ``netgrow data upload|list`` and ``netgrow download``.

Uploads stream the file from disk (httpx sends it in chunks), downloads
stream to a temporary file next to ``--out`` that is renamed once complete
(``ApiClient.upload_dataset`` / ``download``), so neither side holds a dataset
or a network in memory and an interrupted download leaves no half file under
the name asked for.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from app.cli import client as api

DOWNLOAD_FORMATS = {
    "safetensors": ("artifacts/weights", "weights.safetensors"),
    "onnx": ("artifacts/model.onnx", "model.onnx"),
    "spec": ("architecture", "model.json"),  # the route's JSON body holds it under "model"
}


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="datasets on the server: upload an npz file or image-folder archive, "
                                              "list them")
    data_commands = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    upload = data_commands.add_parser("upload", help="upload an .npz file or a .zip/.tar of an image folder")
    upload.add_argument("file", type=Path)
    upload.set_defaults(handler=upload_command)
    listing = data_commands.add_parser("list", help="your datasets on the server")
    listing.add_argument("--json", action="store_true", help="print the raw JSON")
    listing.set_defaults(handler=list_command)
    for parser in (upload, listing):
        api.add_connection_arguments(parser)

    download = subparsers.add_parser("download", help="download a finished job's network")
    download.add_argument("job_id")
    download.add_argument("--format", choices=tuple(DOWNLOAD_FORMATS), default="safetensors",
                          help="safetensors (weights, model spec in the metadata), onnx (runs without netgrow: "
                               "images in [0, 1] in, logits out) or spec (the grown architecture as JSON)")
    download.add_argument("--out", type=Path, help="file to write (default: <job id>-<format file name>)")
    api.add_connection_arguments(download)
    download.set_defaults(handler=download_command)


def download_artifact(client: api.ApiClient, job_id: str, fmt: str, out: Path) -> Path:
    if fmt == "spec":  # the grown architecture, as a model spec a new job (or build_model) takes
        out.write_text(json.dumps(client.architecture(job_id)["model"], indent=1) + "\n")
        return out
    return client.download(f"/v1/jobs/{job_id}/{DOWNLOAD_FORMATS[fmt][0]}", out)


@api.talks_to_server
def upload_command(args: argparse.Namespace) -> int:
    if not args.file.is_file():
        print(f"error: no file {args.file}; give an .npz file or a .zip/.tar of an image folder", file=sys.stderr)
        return 2
    with api.ApiClient(args.server, args.key) as client:
        dataset = client.upload_dataset(args.file)
    print_dataset(dataset)
    print(f'  use it in a job spec: "data": {{"name": "upload", "id": "{dataset["id"]}"}}')
    print(dataset["id"])
    return 0


@api.talks_to_server
def list_command(args: argparse.Namespace) -> int:
    with api.ApiClient(args.server, args.key) as client:
        page = client.datasets()
    if args.json:
        print(json.dumps(page, indent=1))
        return 0
    if not page["items"]:
        print("no datasets; upload one with `netgrow data upload FILE`")
    for dataset in page["items"]:
        print_dataset(dataset)
    return 0


@api.talks_to_server
def download_command(args: argparse.Namespace) -> int:
    out = args.out or Path(f"{args.job_id}-{DOWNLOAD_FORMATS[args.format][1]}")
    with api.ApiClient(args.server, args.key) as client:
        download_artifact(client, args.job_id, args.format, out)
    print(f"{args.format} written to {out} ({out.stat().st_size:,} bytes)")
    return 0


def print_dataset(dataset: dict[str, Any]) -> None:
    shape = "×".join(str(d) for d in dataset["image_shape"]) if dataset.get("image_shape") else "mixed sizes"
    classes = ", ".join(dataset["class_names"][:10]) + (" …" if len(dataset["class_names"]) > 10 else "")
    print(f"dataset {dataset['id']}: {dataset['format']} {dataset['filename']!r}, {shape}, "
          f"{dataset['train_samples']:,} train + {dataset['test_samples']:,} test images, "
          f"{dataset['num_classes']} classes ({classes}), sha256 {dataset['sha256'][:12]}…")
