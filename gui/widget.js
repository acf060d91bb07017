// The stepper widget's front end (anywidget loads this ES module; gui/widget.py is the model).
// It only shows what Python computed (the SVG picture, the inspector's HTML, the counters)
// and sends what the person asked for as custom messages: {action: "step" | "back" |
// "end_of_pass" | "reset"} from the buttons and the arrow keys, {action: "select", node: id}
// from a click on a node box (an SVG <g id="node-<id>">). No engine logic lives here.

const BUTTONS = [
  // action, label, the trait that enables it, tooltip
  ["step", "Step", "can_step", "One step (right arrow)"],
  ["back", "Back", "can_back", "Undo the last step (left arrow)"],
  ["end_of_pass", "Run to end of pass", "can_step", "Finish the pass under way"],
  ["reset", "Reset", "can_back", "Back to before the first step"],
];
const STATUS_TRAITS = ["phase", "position", "total", "current", "can_step", "can_back", "error"];
const KEYS = { ArrowRight: "step", ArrowLeft: "back" };
const NODE_PREFIX = "node-";

function element(tag, className, parent) {
  const made = document.createElement(tag);
  made.className = className;
  parent?.append(made);
  return made;
}

function makeToolbar(model, parent) {
  const bar = element("div", "tg-toolbar", parent);
  return BUTTONS.map(([action, label, enabledBy, tooltip]) => {
    const button = element("button", "tg-button", bar);
    button.type = "button";
    button.textContent = label;
    button.title = tooltip;
    button.dataset.action = action;
    button.addEventListener("click", () => model.send({ action }));
    return { button, enabledBy };
  });
}

// The node id of the box a click landed in, or null outside every box.
function clickedNode(event, picture) {
  const box = event.target.closest?.(`g[id^="${NODE_PREFIX}"]`);
  if (!box || !picture.contains(box)) return null;
  const id = Number(box.id.slice(NODE_PREFIX.length));
  return Number.isInteger(id) ? id : null;
}

function statusText(model) {
  const current = model.get("current");
  const where = current >= 0 ? ` · node #${current}` : "";
  return `${model.get("phase")} · step ${model.get("position")}/${model.get("total")}${where}`;
}

function render({ model, el }) {
  el.classList.add("tg-stepper");
  el.tabIndex = 0; // focusable, so the arrow keys reach it
  const buttons = makeToolbar(model, el);
  const status = element("div", "tg-status", el);
  const error = element("div", "tg-error", el);
  const body = element("div", "tg-body", el);
  const picture = element("div", "tg-picture", body);
  const inspector = element("div", "tg-inspector-panel", body);

  const markSelected = () => {
    picture.querySelector("g.tg-selected")?.classList.remove("tg-selected");
    const selected = model.get("selected");
    if (selected < 0) return;
    picture.querySelector(`#${NODE_PREFIX}${selected}`)?.classList.add("tg-selected");
  };
  const drawPicture = () => {
    picture.innerHTML = model.get("svg");
    markSelected();
  };
  const drawInspector = () => {
    inspector.innerHTML = model.get("inspector");
  };
  const drawStatus = () => {
    status.textContent = statusText(model);
    for (const { button, enabledBy } of buttons) button.disabled = !model.get(enabledBy);
    error.textContent = model.get("error");
    error.hidden = !model.get("error");
  };

  picture.addEventListener("click", (event) => {
    const node = clickedNode(event, picture);
    if (node !== null) model.send({ action: "select", node });
  });
  el.addEventListener("keydown", (event) => {
    const action = KEYS[event.key];
    if (!action) return;
    event.preventDefault();
    event.stopPropagation(); // not also a notebook shortcut
    model.send({ action });
  });

  // one event name per call: not every host's model splits "change:a change:b"
  const listeners = [
    ["change:svg", drawPicture],
    ["change:selected", markSelected],
    ["change:inspector", drawInspector],
    ...STATUS_TRAITS.map((name) => [`change:${name}`, drawStatus]),
  ];
  for (const [event, listener] of listeners) model.on(event, listener);
  drawPicture();
  drawInspector();
  drawStatus();
  return () => {
    for (const [event, listener] of listeners) model.off(event, listener);
  };
}

export default { render };
