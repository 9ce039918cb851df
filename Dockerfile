# syntax=docker/dockerfile:1
# material-alch3mist GPU backend: `alch3mist serve` on CUDA (FLUX.1-dev, FLUX.1 Kontext [dev] + LoRA, TRELLIS client).
#
#   docker build -t material-alch3mist/backend .
#   docker run --gpus all -p 8765:8765 -e ALCH3MIST_API_KEYS=openwebui:... -e HF_TOKEN=... \
#       -v alch3mist-data:/data -v hf-cache:/cache material-alch3mist/backend
#
# Weights are not baked in: they download into the /cache volume on first start (HF_TOKEN with the FLUX licences
# accepted), or mount local folders and set ALCH3MIST_FLUX_MODEL / ALCH3MIST_KONTEXT_MODEL to them.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    # VTK renders the multiview images offscreen through EGL on the GPU (graphics capability below)
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# Python 3.11 (the version the project is developed and tested on) + EGL/GL for offscreen rendering
RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common gpg-agent ca-certificates curl \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev build-essential \
      libegl1 libgl1 libgles2 libglvnd0 libegl-mesa0 libgomp1 libxrender1 libxext6 \
 && rm -rf /var/lib/apt/lists/* \
 && python3.11 -m venv $VIRTUAL_ENV

WORKDIR /app
# Dependencies first (cached layer): the pinned requirements, with the package itself installed editable
COPY requirements.txt ./
COPY backend/pyproject.toml backend/pyproject.toml
COPY backend/src backend/src
RUN pip install --upgrade pip && pip install -r requirements.txt

# The viewer bundle (vendored <model-viewer>) and the plugins (mounted into Open WebUI by compose.yaml)
COPY model_viewer model_viewer
COPY pipelines pipelines
COPY tools tools

RUN useradd --create-home --uid 1000 alch3mist && mkdir -p /data /cache && chown alch3mist /data /cache
USER alch3mist
ENV ALCH3MIST_HOST=0.0.0.0 \
    ALCH3MIST_PORT=8765 \
    ALCH3MIST_DATA_DIR=/data \
    ALCH3MIST_CACHE_DIR=/cache/alch3mist \
    HF_HOME=/cache/huggingface
VOLUME ["/data", "/cache"]
EXPOSE 8765
# Loading FLUX.1-dev + Kontext takes minutes: the port opens (and /healthz answers) only once they are loaded
HEALTHCHECK --interval=30s --timeout=5s --start-period=900s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8765/healthz', timeout=4)"
ENTRYPOINT ["alch3mist"]
# Listening on 0.0.0.0 needs ALCH3MIST_API_KEYS: without keys `serve` refuses to start off loopback (docs/api.md).
CMD ["serve", "--host", "0.0.0.0", "--port", "8765"]
