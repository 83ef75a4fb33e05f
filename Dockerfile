FROM condaforge/miniforge3:latest
LABEL io.github.snakemake.containerized="true"
LABEL io.github.snakemake.conda_env_hash="54a9efb6a0b7618ffdfe64050388adf6bcfa55e539df75988e2c9e9f2e0bc3cf"
# Conda environment:
#   source: workflow/envs/comet.yaml
#   prefix: /conda-envs/ce079a02ca2526301f77202263f10f5b
#   # COMET scoring (wmt22-comet-da, §4.3). Pins as in requirements/lock.txt.
#   channels:
#     - conda-forge
#     - nodefaults
#   dependencies:
#     - python=3.11
#     - pip
#     - pip:
#         - unbabel-comet==2.2.7
#         - torch==2.13.0
#         - transformers==4.57.6
#         - tokenizers==0.22.1
#         - huggingface-hub==0.36.0
#         - numpy==1.26.4
#         - pandas==2.3.3
#         - sacrebleu==2.5.1
#         - protobuf==4.25.9
#         - sentencepiece==0.2.2
#         - setuptools==80.10.2
#         - pytorch-lightning==2.6.6
#         - torchmetrics==0.10.3
#         - lightning-utilities==0.15.3
#         - jsonargparse==3.13.1
#         - entmax==1.3
#         - scipy==1.17.1
#         - pyyaml==6.0.3
#         - jsonschema==4.26.0
RUN mkdir -p /conda-envs/ce079a02ca2526301f77202263f10f5b
COPY workflow/envs/comet.yaml /conda-envs/ce079a02ca2526301f77202263f10f5b/environment.yaml
# Conda environment:
#   source: workflow/envs/data.yaml
#   prefix: /conda-envs/f48fcc8bf80ee49bc17dcd00467576e4
#   # Data preparation rules (fetch_data, prepare_train, prepare_eval). Pins as in requirements/lock.txt.
#   channels:
#     - conda-forge
#     - nodefaults
#   dependencies:
#     - python=3.11
#     - pip
#     - pip:
#         - pyyaml==6.0.3
#         - jsonschema==4.26.0
RUN mkdir -p /conda-envs/f48fcc8bf80ee49bc17dcd00467576e4
COPY workflow/envs/data.yaml /conda-envs/f48fcc8bf80ee49bc17dcd00467576e4/environment.yaml
# Conda environment:
#   source: workflow/envs/report.yaml
#   prefix: /conda-envs/91e1f2ed603d197c9be8a64f0c9af81d
#   # Tables and figures. Pins as in requirements/lock.txt.
#   channels:
#     - conda-forge
#     - nodefaults
#   dependencies:
#     - python=3.11
#     - pip
#     - pip:
#         - pandas==2.3.3
#         - numpy==1.26.4
#         - pyyaml==6.0.3
#         - jsonschema==4.26.0
#         - matplotlib==3.11.2
#         - seaborn==0.13.2
#         - contourpy==1.3.3
#         - cycler==0.12.1
#         - fonttools==4.68.0
#         - kiwisolver==1.5.1
#         - pillow==13.0.0
#         - pyparsing==3.3.3
RUN mkdir -p /conda-envs/91e1f2ed603d197c9be8a64f0c9af81d
COPY workflow/envs/report.yaml /conda-envs/91e1f2ed603d197c9be8a64f0c9af81d/environment.yaml
# Conda environment:
#   source: workflow/envs/score.yaml
#   prefix: /conda-envs/9f3ba03e326d4ec42a143064fddffbbc
#   # Scoring rules (bleu). Pins as in requirements/lock.txt.
#   channels:
#     - conda-forge
#     - nodefaults
#   dependencies:
#     - python=3.11
#     - pip
#     - pip:
#         - sacrebleu==2.5.1
#         - numpy==1.26.4
#         - pyyaml==6.0.3
#         - jsonschema==4.26.0
RUN mkdir -p /conda-envs/9f3ba03e326d4ec42a143064fddffbbc
COPY workflow/envs/score.yaml /conda-envs/9f3ba03e326d4ec42a143064fddffbbc/environment.yaml
# Conda environment:
#   source: workflow/envs/train.yaml
#   prefix: /conda-envs/a4bb75ef0b85de55c6a3a355f23b0de6
#   # Tokenizer, model building, training and decoding rules. Pins as in requirements/lock.txt.
#   channels:
#     - conda-forge
#     - nodefaults
#   dependencies:
#     - python=3.11
#     - pip
#     - pip:
#         - torch==2.13.0
#         - transformers==4.57.6
#         - tokenizers==0.22.1
#         - huggingface-hub==0.36.0
#         - safetensors==0.7.0
#         - accelerate==1.15.0
#         - numpy==1.26.4
#         - tqdm==4.67.1
#         - pyyaml==6.0.3
#         - jsonschema==4.26.0
#         # DeepSpeed ZeRO-3 (docs/deepspeed.md); on CPU its shm comm op is built on first use (g++)
#         - deepspeed==0.19.8
#         - ninja==1.13.2
#         - einops==0.8.2
#         - hjson==3.1.0
#         - msgpack==1.2.4
#         - py-cpuinfo==9.0.0
#         - packaging==25.0
#         - psutil==7.2.2
#         - pydantic==2.14.3
RUN mkdir -p /conda-envs/a4bb75ef0b85de55c6a3a355f23b0de6
COPY workflow/envs/train.yaml /conda-envs/a4bb75ef0b85de55c6a3a355f23b0de6/environment.yaml
# Conda environment:
#   source: workflow/envs/vllm.yaml
#   prefix: /conda-envs/709e8438c01f0cf9f0c46771076da8a4
#   # vLLM decoding (rules decode and teacher_outputs when decoding.engine / sequences.engine is vllm;
#   # common.smk engine_env). Pins as in requirements/vllm.txt (uv pip compile of requirements/vllm.in):
#   # torch and transformers as in the train env, vLLM 0.32.0 (docs/environments.md). GPU machines.
#   channels:
#     - conda-forge
#     - nodefaults
#   dependencies:
#     - python=3.11
#     - pip
#     - pip:
#         - accelerate==1.15.0
#         - agent-detector==2.0.0
#         - aiohappyeyeballs==2.7.1
#         - aiohttp==3.14.5
#         - aiosignal==1.4.0
#         - annotated-doc==0.0.7
#         - annotated-types==0.8.0
#         - anthropic==2.14.0
#         - anyio==4.16.0
#         - apache-tvm-ffi==0.1.11
#         - astor==0.8.1
#         - attrs==26.1.0
#         - blake3==1.0.11
#         - cachetools==8.0.2
#         - cbor2==6.3.0
#         - certifi==2026.10.19.post1
#         - cffi==2.1.1
#         - charset-normalizer==3.5.3
#         - click==8.5.1
#         - cloudpickle==3.1.3
#         - colorama==0.4.6
#         - compressed-tensors==0.17.0
#         - cryptography==50.0.2
#         - cuda-bindings==13.5.0
#         - cuda-core==1.2.2
#         - cuda-pathfinder==1.9.1
#         - cuda-python==12.6.2.post1
#         - cuda-tile==1.7.0
#         - cuda-toolkit==13.0.3.0
#         - depyf==0.20.0
#         - detect-installer==0.2.1
#         - dill==0.4.1
#         - dnspython==2.9.2
#         - docstring-parser==0.18.0
#         - einops==0.8.2
#         - email-validator==2.4.0
#         - fastapi==0.136.3
#         - fastapi-cli==0.0.34
#         - fastapi-cloud-cli==0.28.0
#         - fastar==0.12.0
#         - fastsafetensors==0.5.0
#         - filelock==4.3.1
#         - flashinfer-python==0.7.0.post1
#         - frozenlist==1.8.0
#         - fsspec==2026.9.0
#         - googleapis-common-protos==1.76.0
#         - grpcio==1.85.3
#         - h11==0.16.0
#         - hf-xet==1.8.0
#         - httpcore==1.0.9
#         - httpcore2==2.16.2
#         - httptools==0.9.0
#         - httpx==0.28.1
#         - httpx2==2.16.2
#         - huggingface-hub==1.33.0
#         - humming-kernels==0.1.17
#         - idna==3.20
#         - ijson==3.6.0
#         - instanttensor==0.2.2
#         - interegular==0.3.3
#         - jinja2==3.1.6
#         - jiter==0.19.0
#         - jmespath==1.1.0
#         - jsonschema==4.26.0
#         - jsonschema-specifications==2025.9.1
#         - lark==1.2.2
#         - llguidance==1.7.6
#         - llvmlite==0.47.0
#         - lm-format-enforcer==0.11.3
#         - loguru==0.7.3
#         - lxml==6.1.3
#         - markdown-it-py==4.3.0
#         - markupsafe==3.0.4
#         - mcp==2.3.0
#         - mcp-types==2.3.0
#         - mdurl==0.1.2
#         - mistral-common==1.13.1
#         - ml-dtypes==0.6.0
#         - model-hosting-container-standards==0.1.16
#         - mpmath==1.3.0
#         - msgspec==0.23.0
#         - multidict==7.2.1
#         - nccl-extensions==0.1.0
#         - nccl4py==0.6.0
#         - networkx==3.6.1
#         - ninja==1.13.2
#         - numba==0.65.0
#         - numpy==2.3.5
#         - nvidia-cublas==13.1.1.3
#         - nvidia-cuda-cccl==13.3.5.0.6
#         - nvidia-cuda-crt==13.5.37
#         - nvidia-cuda-cupti==13.0.85
#         - nvidia-cuda-nvcc==13.5.37
#         - nvidia-cuda-nvrtc==13.0.88
#         - nvidia-cuda-runtime==13.0.96
#         - nvidia-cudnn-cu13==9.20.0.48
#         - nvidia-cudnn-frontend==1.32.0
#         - nvidia-cufft==12.0.0.61
#         - nvidia-cufile==1.15.1.6
#         - nvidia-curand==10.4.0.35
#         - nvidia-cusolver==12.0.4.66
#         - nvidia-cusparse==12.6.3.3
#         - nvidia-cusparselt-cu13==0.8.1
#         - nvidia-cutlass-dsl==4.8.0
#         - nvidia-cutlass-dsl-libs-base==4.8.0
#         - nvidia-cutlass-dsl-libs-core==4.8.0
#         - nvidia-cutlass-dsl-libs-cu12==4.8.0
#         - nvidia-cutlass-dsl-libs-cu13==4.8.0
#         - nvidia-ml-py==13.615.71
#         - nvidia-nccl-cu13==2.29.7
#         - nvidia-nvjitlink==13.5.37
#         - nvidia-nvshmem-cu13==3.4.5
#         - nvidia-nvtx==13.0.85
#         - nvidia-nvvm==13.5.37
#         - nvtx==0.2.15
#         - openai==3.57.0
#         - opencv-python-headless==5.0.0.93
#         - opentelemetry-api==1.45.2
#         - opentelemetry-exporter-http-transport==0.66b2
#         - opentelemetry-exporter-otlp==1.45.2
#         - opentelemetry-exporter-otlp-common==0.66b2
#         - opentelemetry-exporter-otlp-proto-common==1.45.2
#         - opentelemetry-exporter-otlp-proto-grpc==1.45.2
#         - opentelemetry-exporter-otlp-proto-http==1.45.2
#         - opentelemetry-proto==1.45.2
#         - opentelemetry-sdk==1.45.2
#         - opentelemetry-semantic-conventions==0.66b2
#         - opentelemetry-semantic-conventions-ai==0.5.1
#         - oss-harmony==0.0.11
#         - outlines-core==0.2.14
#         - packaging==26.4
#         - partial-json-parser==0.2.1.1.post7
#         - pillow==13.0.0
#         - portalocker==4.4.2
#         - prometheus-client==0.26.0
#         - prometheus-fastapi-instrumentator==8.1.0
#         - propcache==0.5.4
#         - protobuf==7.36.2
#         - psutil==7.2.2
#         - py-cpuinfo==9.0.0
#         - pybase64==1.5.1
#         - pycountry==26.2.16
#         - pycparser==3.12
#         - pydantic==2.14.4
#         - pydantic-core==2.50.5
#         - pydantic-extra-types==2.11.1
#         - pydantic-settings==2.16.3
#         - pygments==2.21.0
#         - pyjwt==2.15.1
#         - pynvvideocodec==2.0.4
#         - python-dotenv==1.2.4
#         - python-json-logger==4.2.0
#         - python-multipart==0.0.34
#         - pyyaml==6.0.3
#         - pyzmq==27.3.0
#         - quack-kernels==0.6.5
#         - referencing==0.37.0
#         - regex==2026.11.19
#         - requests==2.34.2
#         - rich==15.0.0
#         - rich-toolkit==0.20.6
#         - rignore==0.8.1
#         - rpds-py==2026.9.1
#         - sacrebleu==2.5.1
#         - safetensors==0.8.0
#         - sentencepiece==0.2.3
#         - sentry-sdk==2.75.0
#         - setproctitle==1.3.8
#         - setuptools==84.2.1
#         - shellingham==1.5.4
#         - sniffio==1.3.1
#         - sse-starlette==3.7.0
#         - starlette==1.10.0
#         - supervisor==4.3.0
#         - sympy==1.14.0
#         - tabulate==0.10.0
#         - tiktoken==0.14.0
#         - tilelang==0.1.12
#         - tokenizers==0.23.3
#         - tokenspeed-mla==0.2.15
#         - tokenspeed-triton==3.9.10.post20261028
#         - torch==2.13.0
#         - torch-c-dlpack-ext==0.1.5
#         - torchaudio==2.11.0
#         - torchcodec==0.17.0
#         - torchvision==0.28.0
#         - tqdm==4.67.1
#         - transformers==5.17.0
#         - triton==3.7.1
#         - truststore==0.10.5
#         - typer==0.29.2
#         - typing-extensions==4.16.0
#         - typing-inspection==0.4.5
#         - urllib3==2.8.0
#         - uvicorn==0.54.0
#         - uvloop==0.23.0
#         - vllm==0.32.0
#         - watchfiles==1.3.0
#         - websockets==17.4
#         - xgrammar==0.2.8
#         - yarl==1.25.1
#         - z3-solver==4.15.4.0
RUN mkdir -p /conda-envs/709e8438c01f0cf9f0c46771076da8a4
COPY workflow/envs/vllm.yaml /conda-envs/709e8438c01f0cf9f0c46771076da8a4/environment.yaml

RUN conda env create --prefix /conda-envs/ce079a02ca2526301f77202263f10f5b --file /conda-envs/ce079a02ca2526301f77202263f10f5b/environment.yaml && \
    conda env create --prefix /conda-envs/f48fcc8bf80ee49bc17dcd00467576e4 --file /conda-envs/f48fcc8bf80ee49bc17dcd00467576e4/environment.yaml && \
    conda env create --prefix /conda-envs/91e1f2ed603d197c9be8a64f0c9af81d --file /conda-envs/91e1f2ed603d197c9be8a64f0c9af81d/environment.yaml && \
    conda env create --prefix /conda-envs/9f3ba03e326d4ec42a143064fddffbbc --file /conda-envs/9f3ba03e326d4ec42a143064fddffbbc/environment.yaml && \
    conda env create --prefix /conda-envs/a4bb75ef0b85de55c6a3a355f23b0de6 --file /conda-envs/a4bb75ef0b85de55c6a3a355f23b0de6/environment.yaml && \
    conda env create --prefix /conda-envs/709e8438c01f0cf9f0c46771076da8a4 --file /conda-envs/709e8438c01f0cf9f0c46771076da8a4/environment.yaml && \
    conda clean --all -y
