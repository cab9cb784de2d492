# The image every node of the Ray cluster runs (cluster.yaml `docker.image`), built from this repository:
#
#   docker build -t forecaster:0.1.0 .
#
# Ray and Python must be the same on the client, the head and the workers: the tag's Ray version is the
# `ray[train,data]==` pin of pyproject.toml and its Python (py311) one that requires-python allows
# (tests/test_deploy.py checks both). Bump them together.
FROM rayproject/ray:2.60.0-py311-gpu

# The base image's non-root user (uid 1000, home /home/ray, owns the Python environment); never root.
USER ray

# rayproject/ray images carry Ray (and the autoscaler's boto3) but no torch. The -gpu image needs a CUDA
# build of torch, installed first from PyTorch's index so that `pip install .` finds torch>=2.3 satisfied
# and does not pull another build. Pick the CUDA variant of torch 2.13.0 that the nodes' NVIDIA driver
# supports (https://download.pytorch.org/whl/torch/); for a CPU-only image use TORCH_INDEX=.../whl/cpu.
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu128
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"

WORKDIR /home/ray/forecaster

# pyproject.toml's metadata (readme = "README.md") is part of the build: keep README.md in the context.
COPY --chown=ray:users . /home/ray/forecaster
RUN pip install --no-cache-dir ".[s3,gcs,cluster]" \
    && python -c "import forecaster, jobs, ray, torch; assert ray.__version__ == '2.60.0', ray.__version__"

# The job is started by `ray job submit ... -- python -m jobs.nightly --config ...` on the cluster;
# run by hand, the image prints the config keys.
CMD ["forecaster", "config"]
