#!/usr/bin/env bash
# Every bad input we know of, through the real CLI: one table row per case
#   case | exit code (expected) | first line of the message
# The message is the first "error: ..." line of stderr; for typer usage errors (exit 2 before any of
# our code runs) the first line inside typer's box; otherwise the first line of stderr.
#
# Builds its own tiny dataset, a tiny nbsvm run and a tiny cnn run in a temporary folder, then checks
# that every case exits with its expected code, that no stderr holds a Python traceback, that no
# temporary file (.*.tmp, model.tmp) is left in the temporary folder and that the crafted pickle
# checkpoint never ran. Exits non-zero if any check fails.
#
# Usage (from the repository root): bash scripts/bad_inputs.sh
# Environment: IMDB_SENTIMENT (the CLI; default: imdb-sentiment on PATH, else .venv/bin/imdb-sentiment),
#              BAD_INPUTS_JOBS (cases run side by side; default 2), KEEP_TMP=1 keeps the temp folder,
#              BAD_INPUTS_SKIP (case names, one a line, reported as skipped: tests/test_bad_inputs_script.py
#              skips those another test already runs through the real process).
set -u

if [[ -n "${IMDB_SENTIMENT:-}" ]]; then
    CLI=$IMDB_SENTIMENT
elif command -v imdb-sentiment >/dev/null 2>&1; then
    CLI=$(command -v imdb-sentiment)
elif [[ -x .venv/bin/imdb-sentiment ]]; then
    CLI=.venv/bin/imdb-sentiment
else
    echo "bad_inputs.sh: no imdb-sentiment on PATH and no .venv/bin/imdb-sentiment" >&2
    exit 2
fi
CLI=$(cd "$(dirname "$CLI")" && pwd)/$(basename "$CLI")
PYTHON=$(dirname "$CLI")/python
[[ -x "$PYTHON" ]] || PYTHON=python3
JOBS=${BAD_INPUTS_JOBS:-2}
REPO=$(pwd)
[[ -f "$REPO/tests/helpers.py" ]] || { echo "bad_inputs.sh: run it from the repository root" >&2; exit 2; }

TMP=$(mktemp -d "${TMPDIR:-/tmp}/bad-inputs.XXXXXX")
if [[ "${KEEP_TMP:-0}" != 1 ]]; then trap 'rm -rf "$TMP"' EXIT; fi
cd "$TMP" || exit 2
mkdir -p logs cases
export NO_COLOR=1 COLUMNS=200 IMDB_SENTIMENT_DATA="$TMP/no-default-data"

# --------------------------------------------------------------------------------------- fixtures
PYTHONPATH="$REPO/tests" "$PYTHON" - <<'EOF' || { echo "bad_inputs.sh: could not write the fixtures" >&2; exit 2; }
import io
import shutil
import tarfile
from pathlib import Path

from helpers import write_tiny_parquet_imdb

write_tiny_parquet_imdb(Path("imdb"))
shutil.copytree("imdb", "corrupt-parquet")
Path("corrupt-parquet/train.parquet").write_bytes(b"PAR1 this is not parquet at all PAR1")

# An aclImdb archive cut in half, as an interrupted download leaves it.
buffer = io.BytesIO()
with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
    for split in ("train", "test"):
        for polarity, rating in (("pos", 9), ("neg", 2)):
            for index in range(20):
                data = f"review {index} of {split}/{polarity}: " .encode() + b"words " * 200
                info = tarfile.TarInfo(f"aclImdb/{split}/{polarity}/{index}_{rating}.txt")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
raw = buffer.getvalue()
Path("aclImdb_v1.tar.gz").write_bytes(raw[: len(raw) // 2])

rows = [("a great and wonderful film", 1), ("an awful and boring film", 0)] * 6
Path("missing-column.csv").write_text("review,label\n" + "".join(f"{t},{l}\n" for t, l in rows))
# Any label is a class now: 12 rows of 2 reviews and a third label on a third review, 3 distinct reviews in all.
Path("unknown-label.csv").write_text("text,label\n" + "".join(f"{t},{l}\n" for t, l in rows) + "a film,meh\n")
# Any number of classes: a test label the training file never uses; the text given as the label column
# (1,001 distinct "labels"); a one-column CSV whose texts hold unquoted commas.
Path("three-classes.csv").write_text("text,label\n" + "".join(f"{t},{l}\n" for t, l in rows) + "a fine film,okay\n" * 6)
Path("unseen-test-label.csv").write_text("text,label\na great film,1\nan odd film,weird\n")
Path("text-as-label.csv").write_text("text,label\n" + "".join(f"review {i},words of review {i}\n" for i in range(1001)))
Path("unquoted-commas.csv").write_text("text\nA masterpiece, the best film.\nDull, I walked out.\n")
Path("empty-text.csv").write_text("text,label\n" + "".join(f"{t},{l}\n" for t, l in rows) + '"  ",1\n')
table = "text,label\n" + "".join(f"{t} café,{l}\n" for t, l in rows)
Path("latin1.csv").write_bytes(table.encode("latin-1"))
Path("utf16-bom.csv").write_bytes(table.encode("utf-16"))  # with a byte-order mark: read as UTF-16
Path("utf16-le.csv").write_bytes(table.encode("utf-16-le"))  # no mark: refused, with a hint
Path("syntax.yaml").write_text("model:\n  name: nbsvm\n  params: {min_df: 1\n")
Path("misspelt.yaml").write_text("model:\n  name: nbsvm\ntrainng:\n  epochs: 2\n")
Path("empty.txt").write_text("")
Path("header-only.csv").write_text("id,text\n")
Path("not-a-run").mkdir()
Path("not-a-run/notes.txt").write_text("no run here\n")

# data files
import gzip
import json
import os

import numpy as np
import pandas as pd

Path("gzipped.csv").write_bytes(gzip.compress(table.encode()))
Path("nul-bytes.csv").write_bytes(table.encode().replace(b"great", b"gr\0eat"))
pd.DataFrame({"text": ["a"], "label": [1]}).to_parquet("parquet-bytes.csv")
Path("array.json").write_text(json.dumps([{"text": t, "label": l} for t, l in rows * 20]))
Path("nested.jsonl").write_text(
    "".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in rows) + '{"text": {"a": 1}, "label": 1}\n'
)
pd.DataFrame({"text": list(range(12)), "label": [1, 0] * 6}).to_parquet("numbers.parquet")
Path("unreadable.csv").write_text(table)
if os.geteuid() == 0:  # root reads a mode-000 file: an I/O error stands in for it
    Path("unreadable.csv").unlink()
    Path("unreadable.csv").symlink_to("/proc/self/mem")
else:
    Path("unreadable.csv").chmod(0)
rng = np.random.default_rng(0)
words = [f"word{i}" for i in range(500)]
texts = [" ".join(rng.choice(words, 12)) for _ in range(200)]
labels = rng.permutation(np.arange(200) % 2).tolist()
pd.DataFrame({"text": texts * 3, "label": labels * 3}).to_csv("tripled.csv", index=False)
shutil.copytree("imdb", "imdb-train-only")
os.remove("imdb-train-only/test.parquet")
EOF

train_tiny() {  # train_tiny NAME MODEL ARGS...: a finished run folder under runs/NAME-*
    local name=$1 model=$2
    shift 2
    "$CLI" train "$model" --data imdb --output-dir runs --name "$name" --quiet "$@" \
        >"logs/train-$name.out" 2>"logs/train-$name.err"
}
# Both at once: the cnn run waits mostly on imports and torch start-up.
train_tiny nbsvm nbsvm --set model.params.min_df=1 --set model.params.max_features=null &
NBSVM_PID=$!
train_tiny cnn cnn --epochs 1 --set model.params.embeddings=random --set model.params.embedding_dim=16 \
    --set model.params.num_filters=8 --set model.params.max_length=24 --set model.params.min_freq=1
CNN_CODE=$?
wait "$NBSVM_PID"
NBSVM_CODE=$?
for name in nbsvm cnn; do
    code_var=${name^^}_CODE
    if [[ "${!code_var}" != 0 ]]; then
        echo "bad_inputs.sh: training the tiny $name run failed:" >&2
        cat "logs/train-$name.err" >&2
        exit 2
    fi
done
NBSVM_RUN=$(ls -d runs/nbsvm*/ | head -n 1 | sed 's:/$::')
CNN_RUN=$(ls -d runs/cnn*/ | head -n 1 | sed 's:/$::')

# An old-format linear run: only model.json and a pipeline.joblib (never unpickled).
cp -r "$NBSVM_RUN" old-linear-run
rm -f old-linear-run/model/*.npy old-linear-run/model/linear.json old-linear-run/model/vocabulary.json \
    old-linear-run/model/manifest.json
"$PYTHON" -c "import pickle, sys; pickle.dump({'pipeline': 'old'}, open(sys.argv[1], 'wb'))" \
    old-linear-run/model/pipeline.joblib

# A copy of the cnn run whose resume point is a pickle that would create a marker file if unpickled
# (with a matching sha256, so only weights_only loading stands between it and running).
cp -r "$CNN_RUN" crafted-run
rm -rf crafted-run/checkpoints && mkdir crafted-run/checkpoints
MARKER="$TMP/PICKLE-RAN"
"$PYTHON" - crafted-run/checkpoints/last.pt "$MARKER" <<'EOF'
import hashlib
import json
import pickle
import sys
from pathlib import Path


class Payload:
    def __reduce__(self):
        return (exec, (f"open({sys.argv[2]!r}, 'w').write('pickle code ran')",))


path = Path(sys.argv[1])
path.write_bytes(pickle.dumps({"model": Payload()}))
Path(f"{path}.sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "\n")
# An interrupted run, so that --resume reaches the checkpoint (a completed one is refused before it).
status = path.parents[1] / "run.json"
status.write_text(json.dumps({**json.loads(status.read_text()), "status": "interrupted"}))
EOF

# Benchmark / analyze: a run whose analysis/ cannot be written (a file in its place), a run whose
# predictions.csv was edited, a suite whose out-of-domain set is not where it says.
cp -r "$NBSVM_RUN" blocked-analysis-run && rm -rf blocked-analysis-run/analysis
echo "not a folder" >blocked-analysis-run/analysis
cp -r "$NBSVM_RUN" edited-predictions-run
sed -i '2s/,0\.[0-9]*,/,x,/' edited-predictions-run/predictions.csv
printf 'rows:\n  - config: nbsvm\nout_of_domain:\n  path: no-such-mr-folder\n' >missing-ood-suite.yaml

# A saved model with a NaN weight that its manifest vouches for (load_array refuses non-finite arrays).
cp -r "$NBSVM_RUN" nan-weight-run
"$PYTHON" - nan-weight-run/model <<'EOF'
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

model = Path(sys.argv[1])
coef = np.load(model / "coef.npy")
coef.flat[0] = np.nan
np.save(model / "coef.npy", coef)
manifest = json.loads((model / "manifest.json").read_text())
manifest["files"]["coef.npy"] = hashlib.sha256((model / "coef.npy").read_bytes()).hexdigest()
(model / "manifest.json").write_text(json.dumps(manifest))
EOF

# onnx and weights: copies of the cnn run with an ONNX graph that export.json vouches for but that
# cannot be loaded (garbage bytes; weights in "external data" outside the folder), and one whose
# network.pt holds a pickle that would create the marker file if it ran (manifest updated to match).
"$PYTHON" - "$CNN_RUN" "$MARKER" <<'EOF' || { echo "bad_inputs.sh: could not write the onnx fixtures" >&2; exit 2; }
import hashlib
import json
import os
import pickle
import shutil
import sys
from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def with_graph(name, content):
    run = Path(shutil.copytree(sys.argv[1], name))
    (run / "onnx").mkdir()
    (run / "onnx" / "model.onnx").write_bytes(content)
    manifest = {"format": "onnx", "file": "model.onnx", "precision": "fp32", "sequence_length": None,
                "sha256": sha256(run / "onnx" / "model.onnx")}
    (run / "onnx" / "export.json").write_text(json.dumps(manifest))


with_graph("onnx-garbage-run", os.urandom(512))
weight = numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), "weight")
weight.ClearField("raw_data")
weight.data_location = TensorProto.EXTERNAL
for key, value in (("location", "../../../../../etc/passwd"), ("offset", "0"), ("length", "16")):
    weight.external_data.add(key=key, value=value)
inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["b", "s"]) for n in ("input_ids", "attention_mask")]
output = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [2, 2])
graph = helper.make_graph([helper.make_node("Identity", ["weight"], ["logits"])], "g", inputs, [output], [weight])
with_graph("onnx-external-run", helper.make_model(graph).SerializeToString())


class Payload:
    def __reduce__(self):
        return (exec, (f"open({sys.argv[2]!r}, 'w').write('pickle code ran')",))


run = Path(shutil.copytree(sys.argv[1], "pickled-network-run"))
(run / "model" / "network.pt").write_bytes(pickle.dumps({"weight": Payload()}))
manifest = json.loads((run / "model" / "manifest.json").read_text())
manifest["files"]["network.pt"] = sha256(run / "model" / "network.pt")
(run / "model" / "manifest.json").write_text(json.dumps(manifest))
EOF

HAS_GPU=$("$PYTHON" -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)

# ------------------------------------------------------------------------------------------ cases
CASES=()
declare -A SKIP=()
while IFS= read -r skipped; do [[ -n "$skipped" ]] && SKIP[$skipped]=1; done <<<"${BAD_INPUTS_SKIP:-}"
case_() {  # case_ NAME EXPECTED_EXIT ARGS... (the CLI's arguments)
    CASES+=("$1")
    [[ -n "${SKIP[$1]:-}" ]] && return  # no args file: reported as skipped
    printf '%s\0' "$2" "${@:3}" >"cases/${#CASES[@]}.args"
}
FAST=(--quiet --output-dir out)
case_ "missing data path" 2 train nbsvm --data no-such-folder "${FAST[@]}"
case_ "corrupt parquet" 2 train nbsvm --data corrupt-parquet "${FAST[@]}"
case_ "truncated .tar.gz" 2 train nbsvm --data aclImdb_v1.tar.gz "${FAST[@]}"
case_ "missing column" 2 train nbsvm --data missing-column.csv "${FAST[@]}"
case_ "3 distinct reviews, 3 labels: too few" 2 train nbsvm --data unknown-label.csv "${FAST[@]}"
case_ "test label never seen in training" 2 data stats --data three-classes.csv --set data.test_path=unseen-test-label.csv
case_ "text column given as the labels" 2 data stats --data text-as-label.csv
case_ "data.target=rating on a table" 2 data stats --data three-classes.csv --set data.target=rating
case_ "predict --file: unquoted commas" 2 predict "$NBSVM_RUN" --file unquoted-commas.csv
case_ "empty text" 2 train nbsvm --data empty-text.csv "${FAST[@]}"
case_ "latin-1 file read as utf-8" 2 train nbsvm --data latin1.csv "${FAST[@]}"
case_ "UTF-16 file without BOM" 2 data stats --data utf16-le.csv
case_ "UTF-16 file with BOM (read)" 0 data stats --data utf16-bom.csv
case_ "YAML syntax error" 2 train syntax.yaml --data imdb "${FAST[@]}"
case_ "misspelt config field" 2 train misspelt.yaml --data imdb "${FAST[@]}"
case_ "learning rate 0.8" 2 train cnn --data imdb --set training.learning_rate=0.8 "${FAST[@]}"
case_ "unknown model" 2 train no-such-model --data imdb "${FAST[@]}"
case_ "unwritable output dir (/proc)" 2 train nbsvm --data imdb --quiet --output-dir /proc/runs
case_ "--kaggle-submission /proc/x.csv" 2 predict "$NBSVM_RUN" "a great film" --kaggle-submission /proc/x.csv
case_ "predict: folder is not a run" 2 predict not-a-run "a great film"
case_ "predict: empty --file" 2 predict "$NBSVM_RUN" --file empty.txt
case_ "predict: header-only CSV" 2 predict "$NBSVM_RUN" --file header-only.csv
case_ "predict --batch-size 0" 2 predict "$NBSVM_RUN" "a great film" --batch-size 0
case_ "evaluate --format bogus" 2 evaluate "$NBSVM_RUN" --data imdb --format bogus
case_ "data stats --format bogus" 2 data stats --data imdb --format bogus
if [[ "$HAS_GPU" == 1 ]]; then
    CASES+=("training.device=cuda (skipped: GPU)")
else
    case_ "training.device=cuda (no GPU)" 2 train cnn --data imdb --set training.device=cuda "${FAST[@]}"
fi
case_ "max_length beyond positions" 2 train minilm --data imdb --set model.params.max_length=4096 "${FAST[@]}"
case_ "old-format linear run" 2 predict old-linear-run "a great film"
case_ "crafted pickle checkpoint" 2 train --resume crafted-run --quiet
case_ "--resume of a folder not a run" 2 train --resume not-a-run --quiet
# benchmark / analyze
case_ "analyze: analysis/ not writable" 2 analyze blocked-analysis-run --data imdb
case_ "analyze: edited predictions.csv" 2 analyze edited-predictions-run --data imdb
case_ "analyze --ood-data not MR" 2 analyze "$NBSVM_RUN" --data imdb --ood-data imdb
case_ "benchmark: OOD path missing" 2 benchmark missing-ood-suite.yaml --data imdb "${FAST[@]}"
# data files
case_ "gzip bytes under .csv" 2 data stats --data gzipped.csv
case_ "UTF-8 text with NUL bytes" 2 data stats --data nul-bytes.csv
case_ "Parquet bytes under .csv" 2 train nbsvm --data parquet-bytes.csv "${FAST[@]}"
case_ "unreadable CSV (mode 000 / EIO)" 2 data stats --data unreadable.csv
case_ "JSON array as .json" 2 data stats --data array.json
case_ "predict --file JSON array" 2 predict "$NBSVM_RUN" --file array.json
case_ "JSON Lines: object as text" 2 train nbsvm --data nested.jsonl "${FAST[@]}"
case_ "Parquet: numbers as text" 2 data stats --data numbers.parquet
NBSVM_TINY=(--set model.params.min_df=1 --set model.params.max_features=null)
case_ "every review 3 times (warns)" 0 train nbsvm --data tripled.csv "${NBSVM_TINY[@]}" "${FAST[@]}"
case_ "--test-limit above the test (warns)" 0 train nbsvm --data imdb --test-limit 100000 "${NBSVM_TINY[@]}" \
    "${FAST[@]}"
case_ "evaluate: data without a test split" 2 evaluate "$NBSVM_RUN" --data imdb-train-only
# onnx and weights
case_ "ONNX graph of garbage bytes" 2 predict onnx-garbage-run --onnx "a great film"
case_ "ONNX external data out of folder" 2 evaluate onnx-external-run --onnx --data imdb
case_ "crafted pickle network.pt" 2 predict pickled-network-run "a great film"
case_ "NaN weight in a saved model" 2 predict nan-weight-run "a great film"
case_ "doc2vec: min_count above every count" 2 train doc2vec --data imdb --set model.params.min_count=100000 "${FAST[@]}"

# server: hostile HTTP requests to the real `serve` on 127.0.0.1 (the tiny nbsvm run). A case passes
# (exit 0) when the answer has the expected status, a JSON body {"error": ...} (or, for a 200, the
# expected fields) and /health still answers; its message line is the answer's error.
SERVE_PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$CLI" serve "$NBSVM_RUN" --port "$SERVE_PORT" --header-timeout 2 --body-timeout 3 >logs/serve.out 2>logs/serve.err &
SERVER_PID=$!
cat >http_case.py <<'EOF_HTTP'
import json, select, socket, sys, time
port, expected, kind = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
HEAD = f"POST /predict HTTP/1.1\r\nHost: localhost:{port}\r\nContent-Type: application/json\r\n"
BODIES = {
    "latin1": '{"texts": ["caf\xe9"]}'.encode("latin-1"),
    "deep-nesting": ('{"texts": ' + "[" * 100_000 + "]" * 100_000 + "}").encode(),
    "digits": ('{"texts": ["a"], "explain": ' + "9" * 5_000 + "}").encode(),
    "request-chars": json.dumps({"texts": ["good film " * 9_000] * 3}).encode(),
    "explain-chars": json.dumps({"texts": ["good film " * 2_100], "explain": True}).encode(),
    "no-known-word": json.dumps({"texts": ["\U0001f3ac\U0001f37f\U0001f60d"]}).encode(),
}
def exchange(request, trickle=None):
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(request)
        sent = 0
        while trickle and sent < 400_000_000 and not select.select([sock], [], [], 0)[0]:
            sock.sendall(trickle)
            sent += len(trickle)
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = b""
    try:
        while chunk := sock.recv(65536):
            answer += chunk
    except ConnectionResetError:
        pass
    return answer
def wait_for_server():
    for _ in range(480):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.25)
wait_for_server()
if kind in BODIES:
    body = BODIES[kind]
    answer = exchange(HEAD.encode() + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
elif kind == "chunked-400mb":
    chunk = b"a" * 65536
    answer = exchange(HEAD.encode() + b"Transfer-Encoding: chunked\r\n\r\n", f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
elif kind == "slow-head":
    answer = exchange(b"GET /health HTTP/1.1\r\nHo")
else:  # a request line: "GET /nowhere", "GET /predict" (405), "GET /docs", "GET /health" with a foreign Host
    method, path, host = {"not-found": ("GET", "/nowhere", "localhost"), "method": ("GET", "/predict", "localhost"),
                          "docs": ("GET", "/docs", "localhost"), "foreign-host": ("GET", "/health", "rebound.example")}[kind]
    answer = exchange(f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
head, _, body = answer.partition(b"\r\n\r\n")
status = int(head.split()[1]) if head.startswith(b"HTTP/1.1 ") else 0
try:
    payload = json.loads(body)
except ValueError:
    payload = None
health = exchange(f"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
if expected == 200:
    share = payload["predictions"][0]["known_token_share"] if payload else None
    good = status == 200 and share == 0 and payload["warnings"]
    line = f"known_token_share {share}; warning: {payload['warnings'][0] if good else None}"
else:
    good = status == expected and isinstance(payload, dict) and list(payload) == ["error"]
    line = f"error: HTTP {status}: {payload['error'] if good else body[:100]!r}"
print(line, file=sys.stderr)
if not health.startswith(b"HTTP/1.1 200"):
    print("FAIL: /health no longer answers", file=sys.stderr)
    sys.exit(1)
sys.exit(0 if good else 1)
EOF_HTTP
http_case_() {  # http_case_ NAME STATUS KIND: one request of KIND must be answered with STATUS
    case_ "server: $1" 0 http "$SERVE_PORT" "$2" "$3"
}
http_case_ "chunked 400 MB body -> 413" 413 chunked-400mb
http_case_ "Latin-1 bytes -> 400" 400 latin1
http_case_ "100k-deep nesting -> 400" 400 deep-nesting
http_case_ "5,000-digit number -> 400" 400 digits
http_case_ "270,000 characters -> 413" 413 request-chars
http_case_ "explain 21,000 chars -> 422" 422 explain-chars
http_case_ "unknown path -> 404" 404 not-found
http_case_ "GET /predict -> 405" 405 method
http_case_ "/docs (CDN scripts) -> 404" 404 docs
http_case_ "DNS-rebound Host -> 400" 400 foreign-host
http_case_ "head never finished -> 408" 408 slow-head
http_case_ "emoji only: known share 0" 200 no-known-word

# configure
# A 1 KB "billion laughs" file (9 levels x 10 aliases), as training.epochs and as name.
BOMB=$("$PYTHON" -c "
lines = ['x: &x', '  a0: &a0 [' + ', '.join(['lol'] * 10) + ']']
lines += [f'  a{i}: &a{i} [' + ', '.join([f'*a{i - 1}'] * 10) + ']' for i in range(1, 9)]
print('\n'.join(lines))")
printf '%s\ntraining:\n  epochs: *x\n' "$BOMB" >bomb-epochs.yaml
printf '%s\nname: *x\n' "$BOMB" >bomb-name.yaml
printf 'model:\n  name: nbsvm\n  params:\n    C: .inf\n' >infinite-c.yaml
cp -r "$CNN_RUN" resume-run  # a finished cnn run: --overwrite lets --resume take it, the refusals come first
case_ "YAML alias bomb (training.epochs)" 2 train bomb-epochs.yaml --data imdb "${FAST[@]}"
case_ "YAML alias bomb (name), show-config" 2 show-config bomb-name.yaml
case_ "--set model.params.C=1e400" 2 show-config nbsvm --set model.params.C=1e400
case_ "C: .inf in YAML" 2 train infinite-c.yaml --data imdb "${FAST[@]}"
case_ "llm-score on a missing GPU (cuda:99)" 2 train "$REPO/configs/llm-score.yaml" --data imdb \
    --set training.device=cuda:99 "${FAST[@]}"
case_ "--resume with a shape change" 2 train --resume resume-run --overwrite --quiet \
    --set model.params.num_filters=4
case_ "train MODEL --resume RUN of another" 2 train nbsvm --resume resume-run --overwrite --quiet
# training backends (issue 25: registered by name, each says which networks it can train)
case_ "unknown training backend" 2 train nbsvm --data imdb --set training.backend=fsdp "${FAST[@]}"
case_ "trainer backend on a word model" 2 train cnn --data imdb --set training.backend=trainer "${FAST[@]}"

# LLM endpoint (llm-prompt): fake OpenAI-compatible servers (tests/fake_openai.py) in one background
# process, one answering HTML, one wanting an API key.
PYTHONPATH="$REPO/tests" "$PYTHON" -c '
import time
from pathlib import Path
from fake_openai import FakeOpenAI
html, keyed = FakeOpenAI(malformed="html").__enter__(), FakeOpenAI(api_key="right").__enter__()
Path("llm-html.url").write_text(html.base_url)
Path("llm-keyed.url").write_text(keyed.base_url)
time.sleep(900)
' >logs/fake-llm.out 2>&1 &  # not on the script's stdout: a caller reading it to the end would wait
FAKE_LLM_PID=$!
for _ in $(seq 300); do [[ -s llm-keyed.url && -s llm-html.url ]] && break; sleep 0.1; done
LLM=(--data imdb --test-limit 12 --set model.params.model=fake --set "model.params.answer_cache=$TMP/llm-cache" "${FAST[@]}")
case_ "llm-prompt: server answers HTML" 2 train llm-prompt --set "model.params.base_url=$(cat llm-html.url)" "${LLM[@]}"
case_ "llm-prompt: api_key_env unset, 401" 2 train llm-prompt --set "model.params.base_url=$(cat llm-keyed.url)" \
    --set model.params.api_key_env=NO_SUCH_KEY_VARIABLE "${LLM[@]}"

# run folders and writes
# A copy of the nbsvm run whose model/ (manifest included) comes from the cnn run; a copy whose
# evaluations/ is a link out of the run folder; a texts file that --output / --kaggle-submission
# name again, directly or through a symlink or a hard link.
cp -r "$NBSVM_RUN" swapped-model-run && rm -rf swapped-model-run/model && cp -r "$CNN_RUN/model" swapped-model-run/model
cp -r "$NBSVM_RUN" linked-evaluations-run && mkdir -p outside && ln -s "$TMP/outside" linked-evaluations-run/evaluations
printf 'id,text\n1,a great film\n2,an awful film\n' >texts.csv
ln -s texts.csv texts-symlink.csv
ln texts.csv texts-hardlink.csv
case_ "model/ from another run" 2 predict swapped-model-run "a great film"
case_ "evaluations/ links out of the run" 2 evaluate linked-evaluations-run
case_ "predict --output onto --file" 2 predict "$NBSVM_RUN" --file texts.csv --output texts.csv
case_ "predict --output: symlink to --file" 2 predict "$NBSVM_RUN" --file texts.csv --output texts-symlink.csv
case_ "--kaggle-submission: hard link" 2 predict "$NBSVM_RUN" --file texts.csv --kaggle-submission texts-hardlink.csv
# (ulimit -f and read-only run folders: tests/test_io_utils.py, which can set limits and mounts)

run_case() {  # run_case N: cases/N.code holds the exit code, logs/N.err the stderr
    local n=$1 args=()
    mapfile -d '' args <"cases/$n.args"
    if [[ "${args[1]}" == http ]]; then  # a request to the server (section "server")
        "$PYTHON" http_case.py "${args[@]:2}" >"logs/$n.out" 2>"logs/$n.err" </dev/null
    else
        "$CLI" "${args[@]:1}" >"logs/$n.out" 2>"logs/$n.err" </dev/null
    fi
    echo $? >"cases/$n.code"
}
export -f run_case
export CLI PYTHON
seq 1 "${#CASES[@]}" | while read -r n; do [[ -f "cases/$n.args" ]] && echo "$n"; done |
    xargs -P "$JOBS" -I{} bash -c 'run_case {}'
kill -INT "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID"
kill "$FAKE_LLM_PID" 2>/dev/null

message() {  # the line that says what went wrong (see the header)
    local err=$1 line
    line=$(grep -m 1 '^error:' "$err")
    [[ -z "$line" ]] && line=$(grep -m 1 '^│ ' "$err" | sed 's/^│ *//; s/ *│$//')
    [[ -z "$line" ]] && line=$(head -n 1 "$err")
    echo "${line:0:150}"
}

# ------------------------------------------------------------------------------------------ report
FAILED=0
printf '%-36s | %-9s | %s\n' "case" "exit" "first line of the message"
printf '%s\n' "-------------------------------------+-----------+--------------------------------------------"
for index in "${!CASES[@]}"; do
    n=$((index + 1))
    name=${CASES[$index]}
    if [[ ! -f "cases/$n.args" ]]; then
        printf '%-36s | %-9s | %s\n' "$name" "-" "skipped"
        continue
    fi
    expected=$(head -z -n 1 "cases/$n.args" | tr -d '\0')
    code=$(cat "cases/$n.code" 2>/dev/null || echo "?")
    flag=""
    if [[ "$code" != "$expected" ]]; then
        flag=" !=$expected"
        FAILED=1
    fi
    if grep -q "Traceback" "logs/$n.err"; then
        flag="$flag TRACEBACK"
        FAILED=1
    fi
    printf '%-36s | %-9s | %s\n' "$name" "$code$flag" "$(message "logs/$n.err")"
done

echo
leftovers=$(find "$TMP" \( -name '.*.tmp' -o -name '*.tmp' -o -name 'model.tmp' \) -print)
if [[ -n "$leftovers" ]]; then
    echo "FAIL: temporary files left behind:"
    echo "$leftovers"
    FAILED=1
else
    echo "ok: no temporary files (.*.tmp, model.tmp) left in the temp folder"
fi
if grep -l "Traceback" logs/*.err >/dev/null 2>&1; then
    echo "FAIL: a traceback in: $(grep -l "Traceback" logs/*.err | tr '\n' ' ')"
    FAILED=1
else
    echo "ok: no stderr holds a traceback"
fi
if [[ "$(cat texts.csv)" != "$(printf 'id,text\n1,a great film\n2,an awful film')" ]] || [[ -n "$(ls -A outside)" ]]; then
    echo "FAIL: an input file was overwritten, or something was written through a link out of a run folder"
    FAILED=1
else
    echo "ok: input files intact, nothing written through a link out of a run folder"
fi
if [[ -e "$MARKER" ]]; then
    echo "FAIL: the crafted checkpoint's pickle code ran ($MARKER exists)"
    FAILED=1
else
    echo "ok: the crafted pickle checkpoint never ran"
fi
if [[ "$FAILED" != 0 ]]; then
    echo "bad_inputs.sh: FAILED (temp folder: $TMP)"
    trap - EXIT
    exit 1
fi
echo "bad_inputs.sh: all ${#CASES[@]} cases behave"
