# medseg: CPU image serving the Streamlit app on port 8501 by default.
#   docker build -t medseg .
#   docker run -p 8501:8501 medseg
# CUDA image: a CUDA runtime base and the matching torch wheel index, e.g.
#   docker build -t medseg:cuda \
#     --build-arg BASE_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04 \
#     --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
#   docker run --gpus all -p 8501:8501 medseg:cuda
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH

# Python from the distribution (Debian 12: 3.11, Ubuntu 24.04: 3.12), so the same file builds on
# the plain and the CUDA base. Versions come from the base image's release, hence no pins.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN python3 -m venv /opt/venv \
    && useradd --create-home --uid 1000 medseg

WORKDIR /opt/medseg

# torch first, from the index matching the base image (CPU or CUDA), then the pinned rest.
COPY constraints.txt pyproject.toml README.md ./
RUN pip install --index-url "${TORCH_INDEX_URL}" "torch==${TORCH_VERSION}"

COPY medseg ./medseg
COPY app ./app
COPY .streamlit ./.streamlit
COPY configs ./configs
COPY data_samples ./data_samples
RUN pip install -c constraints.txt ".[app]"

USER 1000:1000
ENV MEDSEG_WORKSPACE=/home/medseg/workspace
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health')"]
CMD ["streamlit", "run", "app/main.py", "--server.address=0.0.0.0", "--server.port=8501", "--server.headless=true", "--browser.gatherUsageStats=false"]
