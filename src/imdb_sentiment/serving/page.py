"""The page at ``GET /``: one self-contained HTML document (no CDN, no build step) that calls the API.

Kept as a Python string so it ships inside the package without package-data settings.
"""

PAGE_HTML = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>imdb-sentiment</title>
<link rel="icon" href="data:,">
<style>
  body { font: 16px/1.5 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d2330; }
  main { max-width: 860px; margin: 0 auto; padding: 24px; }
  h1 { font-size: 1.4rem; margin: 0 0 12px; }
  textarea { width: 100%; box-sizing: border-box; min-height: 130px; padding: 10px; font: inherit;
             border: 1px solid #c5cad3; border-radius: 6px; }
  button { margin-top: 8px; padding: 8px 20px; font: inherit; border: 0; border-radius: 6px;
           background: #2f5bea; color: white; cursor: pointer; }
  button:disabled { background: #8a9bd6; }
  .panel { background: white; border: 1px solid #dde1e7; border-radius: 8px; padding: 16px; margin-top: 16px; }
  #verdict { font-size: 1.3rem; font-weight: 600; }
  #verdict.positive { color: #1a7f37; } #verdict.negative { color: #c62828; }
  #bars { display: grid; grid-template-columns: max-content 1fr 4em; gap: 4px 10px; align-items: center;
          margin: 8px 0; font-size: .9rem; }
  .bar { height: 14px; background: #e6e9ee; border-radius: 7px; overflow: hidden; }
  .bar-fill { height: 100%; width: 0; background: #8a9bd6; transition: width .3s; }
  .top { font-weight: 600; } .top .bar-fill { background: #2f5bea; }
  .top .bar-fill.positive { background: #3fae5a; } .top .bar-fill.negative { background: #e05252; }
  #review { white-space: pre-wrap; line-height: 1.9; }
  #review .w { border-radius: 3px; padding: 1px 0; }
  .legend { font-size: .85rem; color: #5b6372; }
  #error { color: #c62828; font-weight: 600; }
  #warning { color: #8a5a00; background: #fff4d6; border-radius: 6px; padding: 6px 10px; }
  dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; font-size: .9rem; }
  dt { color: #5b6372; } dd { margin: 0; overflow-wrap: anywhere; }
  [hidden] { display: none !important; }
</style>
</head>
<body>
<main>
  <h1>Movie review sentiment</h1>
  <textarea id="text" placeholder="Paste or type a movie review…"></textarea>
  <button id="classify" type="button">Classify</button>
  <p id="error" role="alert" hidden></p>
  <section class="panel" id="result" hidden>
    <div id="verdict"></div>
    <div id="bars"></div>
    <div id="probability"></div>
    <p id="warning" role="status" hidden></p>
    <p class="legend" id="legend"></p>
    <div id="review"></div>
  </section>
  <section class="panel" id="card">
    <strong>Model card</strong>
    <dl id="card-fields"></dl>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
let explains = true;  // the model card says whether this model explains its verdicts
let explainChars = Infinity;  // and how long a text the server explains

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = !message;
}

function shade(score, scale, signed, positiveVerdict) {
  const strength = scale > 0 ? Math.min(1, Math.abs(score) / scale) : 0;
  const positive = signed ? score > 0 : positiveVerdict;
  const rgb = positive ? "46, 160, 67" : "214, 51, 51";
  return "rgba(" + rgb + ", " + (0.08 + 0.72 * strength).toFixed(3) + ")";
}

// One row per class (name, bar, probability), the predicted class highlighted.
function renderBars(probabilities, label) {
  const bars = $("bars");
  bars.textContent = "";
  for (const [name, p] of Object.entries(probabilities)) {
    const top = name === label ? "top" : "";
    const title = document.createElement("span"); title.textContent = name; title.className = top;
    const bar = document.createElement("div"); bar.className = "bar " + top; bar.title = "P(" + name + ")";
    const fill = document.createElement("div"); fill.className = "bar-fill " + name;
    fill.style.width = (100 * p).toFixed(1) + "%";
    bar.append(fill);
    const value = document.createElement("span"); value.textContent = p.toFixed(3); value.className = top;
    bars.append(title, bar, value);
  }
}

function renderReview(text, explanation, positiveVerdict, sentiment) {
  const review = $("review");
  review.textContent = "";
  const words = explanation ? explanation.words : [];
  const scale = Math.max(0, ...words.map((w) => Math.abs(w.score)));
  let cursor = 0;
  for (const word of words) {
    if (word.start < cursor || Math.abs(word.score) < 1e-12) continue;
    review.append(text.slice(cursor, word.start));
    const span = document.createElement("span");
    span.textContent = text.slice(word.start, word.end);
    const positive = explanation.signed ? word.score > 0 : positiveVerdict;
    span.className = "w " + (positive ? "pos" : "neg");
    span.style.background = shade(word.score, scale, explanation.signed, positiveVerdict);
    span.title = word.score.toFixed(4);
    review.append(span);
    cursor = word.end;
  }
  review.append(text.slice(cursor));
  $("legend").textContent = !explanation ? "This model gives no word-level explanation."
    : !explanation.signed ? "Shaded words are those the model attended to most (" + explanation.method + ")."
    : sentiment && explanation.target === "positive" ? "Green words pushed towards positive, red towards negative (" + explanation.method + ")."
    : "Green words pushed towards " + explanation.target + ", red away from it (" + explanation.method + ").";
}

async function classify() {
  const text = $("text").value;
  showError("");
  if (!text.trim()) { showError("Type a review first."); return; }
  $("classify").disabled = true;
  try {
    const response = await fetch("predict", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({texts: [text], explain: explains && text.length <= explainChars}),
    });
    const body = await response.json();
    if (!response.ok) { showError(body.error || ("HTTP " + response.status)); return; }
    const prediction = body.predictions[0];
    const label = prediction.label;
    const sentiment = prediction.prob_positive !== null && prediction.prob_positive !== undefined;
    $("verdict").textContent = label.charAt(0).toUpperCase() + label.slice(1);
    $("verdict").className = label;
    renderBars(prediction.probabilities, label);
    $("probability").textContent = sentiment ? "P(positive) = " + prediction.prob_positive.toFixed(3)
      : "P(" + label + ") = " + prediction.probabilities[label].toFixed(3);
    const share = prediction.known_token_share;
    $("warning").textContent = share === 0
      ? "The model knows no word of this text (another language, emoji only?): the verdict is only its prior."
      : explains && !prediction.explanation
        ? "Texts over " + explainChars.toLocaleString() + " characters are classified without an explanation."
        : "";
    $("warning").hidden = !$("warning").textContent;
    // Unsigned weights are shaded in the verdict's colour: green unless a sentiment model said negative.
    renderReview(text, prediction.explanation, !sentiment || label === "positive", sentiment);
    $("result").hidden = false;
  } catch (error) {
    showError("The server did not answer: " + error);
  } finally {
    $("classify").disabled = false;
  }
}

async function loadCard() {
  const response = await fetch("model");
  if (!response.ok) return;
  const card = await response.json();
  explains = card.explanation_method !== null;
  if (card.limits && card.limits.max_explain_chars !== undefined) explainChars = card.limits.max_explain_chars;
  const metrics = card.headline_metrics || {};
  const data = card.training_data || {};
  const tested = card.test_set && card.test_set.description ? " (on " + card.test_set.description + ")" : "";
  const fields = [
    ["model", card.name + (card.description ? " — " + card.description : "")],
    ["run", card.run], ["trained", card.trained], ["backend", card.backend],
    ["classes", card.classes ? card.classes.names.join(", ") : null],
    ["explanations", card.explanation_method || "none"],
    ["test accuracy", metrics.accuracy != null ? metrics.accuracy.toFixed(4) + tested : null],
    ["macro F1", metrics.macro_f1 != null ? metrics.macro_f1.toFixed(4) : null],
    ["mean absolute error", metrics.mae != null ? metrics.mae.toFixed(3) : null],
    ["within one class", metrics.within_one != null ? metrics.within_one.toFixed(4) : null],
    ["ROC AUC", metrics.roc_auc != null ? metrics.roc_auc.toFixed(4) : null],
    ["parameters", metrics.parameters !== undefined ? metrics.parameters.toLocaleString() : null],
    ["training data", data.source],
    ["trained on", data.train_reviews_used !== undefined && data.train_reviews_used !== null
      ? data.train_reviews_used.toLocaleString() + " reviews" : null],
    ["their sha256", data.train_used_sha256],
    ["source train part sha256", data.source_train_sha256],
    ["package version", card.package_version],
  ];
  for (const [name, value] of fields) {
    if (value === null || value === undefined) continue;
    const dt = document.createElement("dt"); dt.textContent = name;
    const dd = document.createElement("dd"); dd.textContent = value;
    $("card-fields").append(dt, dd);
  }
}

$("classify").addEventListener("click", classify);
$("text").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) classify();
});
loadCard();
</script>
</body>
</html>
"""
