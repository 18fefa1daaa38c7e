"use strict";
// The review queue: one row per queued prediction; decisions kept in localStorage by the
// enrichment's key until (and after) they are saved as review.csv.
const data = JSON.parse(document.getElementById("queue-data").textContent);
const storageKey = "significance-review:" + data.key;
const decisions = JSON.parse(localStorage.getItem(storageKey) || "{}");
const body = document.querySelector("#queue tbody");

function cell(row, ...children) {
  const td = document.createElement("td");
  td.append(...children);
  row.append(td);
  return td;
}

function text(tag, content, className) {
  const element = document.createElement(tag);
  element.textContent = content;
  if (className) element.className = className;
  return element;
}

function image(src, alt, className) {
  const img = document.createElement("img");
  img.src = src;
  img.alt = alt;
  if (className) img.className = className;
  return img;
}

function remember(id, decision, corrected) {
  decisions[id] = { decision: decision, corrected_label: corrected };
  localStorage.setItem(storageKey, JSON.stringify(decisions));
  show();
}

function decisionCell(tr, item) {
  const td = cell(tr);
  td.className = "decision";
  const saved = decisions[item.id] || { decision: "", corrected_label: "" };
  const select = document.createElement("select");
  select.className = "corrected";
  select.append(text("option", "(corrected label)"));
  select.firstChild.value = "";
  for (const label of item.classes) select.append(text("option", label));
  select.value = saved.corrected_label;
  for (const choice of ["accept", "correct", "reject"]) {
    const label = document.createElement("label");
    const radio = document.createElement("input");
    radio.type = "radio";
    radio.name = "decision-" + item.id;
    radio.value = choice;
    radio.checked = saved.decision === choice;
    radio.addEventListener("change", () => remember(item.id, choice, select.value));
    label.append(radio, " " + choice);
    td.append(label);
  }
  select.addEventListener("change", () => {
    const checked = td.querySelector("input:checked");
    remember(item.id, select.value ? "correct" : (checked ? checked.value : ""), select.value);
    if (select.value) td.querySelector("input[value=correct]").checked = true;
  });
  td.append(select);
}

function addRow(item) {
  const row = item.row;
  const tr = document.createElement("tr");
  tr.className = "item";
  tr.dataset.id = item.id;
  tr.dataset.field = row.field;
  tr.dataset.type = row.artwork_type;
  tr.dataset.probability = row.probability;
  const images = cell(tr, image(item.thumbnail, row.path));
  if (item.heat_maps.stage1) images.append(image(item.heat_maps.stage1, "stage-1 heat map", "heat"));
  if (item.heat_maps.field) images.append(image(item.heat_maps.field, row.task + " heat map", "heat"));
  cell(tr, text("div", "line " + row.line), text("div", row.path));
  cell(tr, text("div", item.stage1.predicted),
    text("div", "p = " + item.stage1.probability, "probability"));
  const p = Number(row.probability);
  cell(tr, text("div", row.field + " (" + row.artwork_type + ")"), text("strong", row.predicted),
    text("div", "p = " + row.probability + ", margin " + row.margin, p < 0.5 ? "low" : "probability"));
  decisionCell(tr, item);
  body.append(tr);
}

function fillChoices(id, values) {
  const select = document.getElementById(id);
  for (const value of [...new Set(values)].sort()) select.append(text("option", value));
}

function show() {
  const field = document.getElementById("filter-field").value;
  const type = document.getElementById("filter-type").value;
  const low = Number(document.getElementById("filter-min").value || 0);
  const high = Number(document.getElementById("filter-max").value || 1);
  const undecided = document.getElementById("filter-undecided").checked;
  let shown = 0;
  for (const tr of body.querySelectorAll("tr.item")) {
    const p = Number(tr.dataset.probability);
    const decided = Boolean((decisions[tr.dataset.id] || {}).decision);
    const visible = (!field || tr.dataset.field === field) && (!type || tr.dataset.type === type)
      && p >= low && p <= high && !(undecided && decided);
    tr.style.display = visible ? "" : "none";
    tr.classList.toggle("decided", decided);
    shown += visible;
  }
  const count = Object.values(decisions).filter((d) => d.decision).length;
  document.getElementById("summary").textContent =
    data.items.length + " predictions queued, " + shown + " shown, " + count + " decided";
}

function csvValue(value) {
  const textValue = String(value == null ? "" : value);
  return /[",\n\r]/.test(textValue) ? '"' + textValue.replace(/"/g, '""') + '"' : textValue;
}

function save() {
  const lines = [data.columns.join(",")];
  for (const item of data.items) {
    const decided = decisions[item.id] || {};
    const row = Object.assign({}, item.row, {
      decision: decided.decision || "",
      corrected_label: decided.decision === "correct" ? decided.corrected_label || "" : "",
    });
    lines.push(data.columns.map((column) => csvValue(row[column])).join(","));
  }
  const blob = new Blob([lines.join("\n") + "\n"], { type: "text/csv" });
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = "review.csv";
  document.body.append(link);
  link.click();
  link.remove();
  document.getElementById("status").textContent = "saved " + new Date().toLocaleTimeString();
}

data.items.forEach(addRow);
fillChoices("filter-field", data.items.map((item) => item.row.field));
fillChoices("filter-type", data.items.map((item) => item.row.artwork_type));
document.getElementById("filters").addEventListener("input", show);
document.getElementById("save").addEventListener("click", save);
show();
