# netgrow: one image for the API, the Celery workers and the one-shot migration.
# The base image already ships CUDA, cuDNN, torch and torchvision, so `pip install .`
# only adds the service dependencies (torch>=2.4 is satisfied and not reinstalled), and the
# onnx extra that GET /v1/jobs/{id}/artifacts/model.onnx exports with.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NETGROW_ARTIFACT_DIR=/data/artifacts \
    NETGROW_DATA_DIR=/data/datasets

WORKDIR /srv/netgrow

# Fashion-MNIST's four IDX files in /usr/share/datasets/fashion-mnist, where a job without data.root
# finds them (after NETGROW_DATA_DIR/fashion-mnist). The base image is Ubuntu: the package is in universe.
RUN apt-get update \
    && apt-get install -y --no-install-recommends dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/* \
    && test -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

# Dependencies first so that code edits do not invalidate the pip layer.
COPY pyproject.toml README.md ./
RUN mkdir -p growth worker app migrations \
    && pip install ".[onnx]" \
    && pip uninstall -y netgrow

COPY growth ./growth
COPY worker ./worker
COPY app ./app
COPY migrations ./migrations
COPY examples ./examples
RUN pip install --no-deps . \
    && python -c "import torch, torchvision, growth, worker, app; print('torch', torch.__version__)"

RUN useradd --create-home --uid 1000 netgrow \
    && mkdir -p /data/artifacts /data/datasets \
    && chown -R netgrow:netgrow /data
USER netgrow
VOLUME ["/data"]

EXPOSE 8000
CMD ["netgrow", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-migrate"]
