"""Tiny randomly initialised models and a tiny ChatML tokenizer, built in-process.

They make unit tests run in seconds with no downloads; integration tests that
need the real embedded default are marked ``integration``.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

# The real-vLLM suite runs in its own venv (`make test-vllm`, .venv-vllm: vLLM pins another
# transformers); it is not collected where vLLM is absent, and never skipped where it runs.
collect_ignore = [] if importlib.util.find_spec("vllm") else ["vllm_real"]

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Paris is the capital of France, and Berlin is the capital of Germany.",
    "Write a short poem about the sea. Use no commas in your answer.",
    "Sure! Here is a list:\n* first item\n* second item\n* third item",
    "I cannot help with that request, but here is something else.",
    "def add(a, b):\n    return a + b  # numbers 0123456789",
    "<<Title>> P.S. [placeholder] *highlighted* section, happy sad good bad.",
] * 20


def build_tokenizer(vocab_size: int = 320, chat_template: bool = True):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<pad>", "<|im_start|>", "<|im_end|>", "<s>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   eos_token="<|im_end|>", bos_token="<s>")
    if chat_template:
        fast.chat_template = CHATML
    return fast


def build_model(tokenizer, seed: int = 0, layers: int = 2, hidden: int = 32, **overrides):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    settings = dict(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                    num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
                    eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                    tie_word_embeddings=False)
    cfg = LlamaConfig(**{**settings, **overrides})
    model = LlamaForCausalLM(cfg).eval()
    # Random init gives near-uniform logits; a larger output scale makes
    # log-probs differ between texts so tests can tell them apart.
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model


def pytest_collection_modifyitems(items):
    """An integration test (the real embedded model, a real server) is slow too: `-m "not slow"` leaves it out."""
    for item in items:
        if item.get_closest_marker("integration") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _threads(request):
    """Tiny models run fastest on one thread (OpenMP start-up dominates); real models use all cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(before if request.node.get_closest_marker("integration") else 1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    return build_model(tiny_tokenizer, seed=0)


@pytest.fixture(scope="session")
def tiny_model_b(tiny_tokenizer):
    return build_model(tiny_tokenizer, seed=1)


@pytest.fixture()
def tiny_dir(tmp_path, tiny_tokenizer):
    """A tiny model saved as a local model directory, with a context long enough for bench prompts."""
    model = build_model(tiny_tokenizer, max_position_embeddings=2048)  # bench prompts are long in a tiny vocab
    model.save_pretrained(tmp_path / "tiny")
    tiny_tokenizer.save_pretrained(tmp_path / "tiny")
    return str(tmp_path / "tiny")


def launch_two_processes(args: list[str], cwd, *, attempts: int = 3):
    """``accelerate launch`` two CPU (gloo) processes running ``args``; the finished process.

    Gloo's start-up sometimes aborts a worker (SIGABRT, "terminate called
    without an active exception", pytorch/pytorch#188266) before any of our
    code runs; only that case is retried, on a fresh port.
    """
    import os
    import socket
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).parents[1]
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               CUDA_VISIBLE_DEVICES="",  # a CPU (gloo) test, also on a machine with a GPU
               PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    for _ in range(attempts):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        # --multi_gpu with no visible GPU is accelerate's torchrun path on CPU (gloo).
        cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(port)] + list(args)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=cwd)
        aborted = "terminate called without an active exception" in proc.stderr and "SIGABRT" in proc.stderr
        if proc.returncode == 0 or not aborted:
            break
    return proc


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> str:
    """A tiny ChatML model saved to disk, for commands that load a model by path."""
    path = tmp_path_factory.mktemp("model") / "tiny"
    tok = build_tokenizer()
    build_model(tok).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)
