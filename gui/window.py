"""The main window: editor and problems on the left, the graph in the middle (its legend
below it), the inspector and the training panel on the right (two tabs of one dock area, so
the graph keeps the window's whole height), the stepping toolbar on top.

The window only wires parts together: the text is checked as it is typed (gui.editor), a
checked file becomes a Session (engine objects), its graph is laid out top to bottom
(gui.layout) and drawn (gui.scene), and the step controller's signals restyle the picture
(gui.presenter). A network opens with one box per layer, fitted to the view; the text and
the graph are linked both ways (gui.source_map). It fits a 1280x680 screen: every panel can
get short, and the toolbar uses short words.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QPointF, QRectF, Qt, QTimer
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QSlider,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from topograd.dsl import DslError, parse
from topograd.dsl.errors import Source
from topograd.gui.actions import FILE, STEPPING, TRAINING, VIEW, Actions
from topograd.gui.diagnostics import Diagnosis
from topograd.gui.documents import Document, RecentFiles
from topograd.gui.editor import CodeEditor, DebouncedChecker
from topograd.gui.inspector import Inspector
from topograd.gui.layout import cached_layout, visible_input
from topograd.gui.legend import LegendBar
from topograd.gui.model import GROUP_PREFIX
from topograd.gui.presenter import StepPresenter
from topograd.gui.problems import ProblemsList
from topograd.gui.scene import GraphScene
from topograd.gui.session import Session
from topograd.gui.stepping import MAX_SPEED, MIN_SPEED, StepController
from topograd.gui.theme import follow_palette
from topograd.gui.training import TrainingPanel
from topograd.gui.view import GraphCanvas, SearchBar

RANKDIR = "TB"  # graphs are drawn top to bottom, as Netron draws them
# A network opens with one box per layer (COLLAPSE_ON_OPEN); a graph file opens with every op
# drawn unless it has more than COLLAPSE_ABOVE nodes.
COLLAPSE_ON_OPEN = True
COLLAPSE_ABOVE = 400
# Below this zoom box text is too small to read: the view starts on the first op instead.
READABLE_ZOOM = 0.45
START_ZOOM = 0.8  # ... else it opens at this zoom, at the start of the forward pass
START_MARGIN = 20.0  # scene points above the graph's first box
# While stepping, the current box is kept inside the middle of the view: when it leaves this
# share of the view's width and height (centred), the view centres on it.
COMFORT = 0.7
# Panel widths as shares of the window's width: editor, graph, and the inspector and
# training panel's dock.
SHARES = (0.23, 0.47, 0.30)


class MainWindow(QMainWindow):
    """topograd's window on one model file."""

    def __init__(self, recent: RecentFiles | None = None):
        super().__init__()
        self.setWindowTitle("topograd")
        self.resize(1500, 920)
        self.session: Session | None = None
        self.collapsed: frozenset[str] = frozenset()
        self.layout_result = None
        self.selected: str | None = None
        self._program = None  # the last program made into a session (positions ignored)
        self._pending: Diagnosis | None = None  # a check that arrived while training ran
        self._fit_next = True  # fit the next graph drawn to the view
        self._training = False  # stepping waits while the training panel trains the model
        self._shown_once = False
        self._known_groups: frozenset[str] = frozenset()  # the groups of the last graph drawn
        self.document = Document(self)
        self.recent = recent if recent is not None else RecentFiles()
        self.actions = Actions(self)
        self.controller = StepController(self)
        self._build_widgets()
        self._build_menus()
        self._connect()
        self._update_actions()
        self.apply_palette()

    # --- construction ----------------------------------------------------------------------
    def _build_widgets(self) -> None:
        self.editor = CodeEditor()
        self.problems = ProblemsList()
        self.checker = DebouncedChecker(self.editor, parent=self)
        left = QSplitter(Qt.Vertical)
        left.addWidget(self.editor)
        left.addWidget(self.problems)
        left.setSizes([700, 120])
        left.setStretchFactor(0, 1)

        self.scene = GraphScene(self)
        self.canvas = GraphCanvas(self.scene)
        self.search = SearchBar(self.scene, self.canvas)
        self.search.hide()
        self.legend = LegendBar()
        middle = QWidget()
        column = QVBoxLayout(middle)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(0)
        column.addWidget(self.search)
        column.addWidget(self.canvas, 1)
        column.addWidget(self.legend)

        self.splitter = QSplitter(Qt.Horizontal)
        for widget in (left, middle):
            self.splitter.addWidget(widget)
        self.splitter.setStretchFactor(1, 1)
        self.setCentralWidget(self.splitter)

        self.inspector = Inspector()
        self.training = TrainingPanel()
        self.inspector_dock = self._dock("Inspector", "inspector", self.inspector)
        self.training_dock = self._dock("Training", "training", self.training)
        self.setTabPosition(Qt.RightDockWidgetArea, QTabWidget.TabPosition.North)
        self.tabifyDockWidget(self.inspector_dock, self.training_dock)
        self.inspector_dock.raise_()
        self._share_width()

        self.presenter = StepPresenter(self.scene)
        self.speed = QSlider(Qt.Horizontal)
        self.speed.setRange(MIN_SPEED, MAX_SPEED)
        self.speed.setValue(10)
        self.speed.setMaximumWidth(100)
        self.speed.setToolTip("play speed: steps per second")
        self.position_label = QLabel()
        self.layout_label = QLabel()
        self.statusBar().addPermanentWidget(self.position_label)
        self.statusBar().addPermanentWidget(self.layout_label)

    def _dock(self, title: str, name: str, widget: QWidget) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(name)
        dock.setWidget(widget)
        self.addDockWidget(Qt.RightDockWidgetArea, dock)
        return dock

    def _share_width(self) -> None:
        """Give the editor, the graph and the right-hand dock their shares of the width."""
        width = max(self.width(), 600)
        editor, graph, dock = (round(width * share) for share in SHARES)
        self.splitter.setSizes([editor, graph])
        self.resizeDocks([self.inspector_dock, self.training_dock], [dock, dock], Qt.Horizontal)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        file_menu.addActions(self.actions.of(FILE[:2]))
        self.recent_menu = file_menu.addMenu("Open &recent")
        file_menu.addActions(self.actions.of(FILE[2:]))
        step_menu = bar.addMenu("&Step")
        step_menu.addActions(self.actions.of(STEPPING[:-1]))
        step_menu.addSeparator()
        step_menu.addAction(self.actions.break_nonfinite)
        self.view_menu = bar.addMenu("&View")
        self.view_menu.addActions(self.actions.of(VIEW))
        # every dock can be shown again after its close button hid it
        self.view_menu.addSeparator()
        for dock in self.findChildren(QDockWidget):
            self.view_menu.addAction(dock.toggleViewAction())
        bar.addMenu("&Train").addActions(self.actions.of(TRAINING))
        toolbar = self.addToolBar("Stepping")
        toolbar.setObjectName("stepping")
        toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        toolbar.addActions(self.actions.of(STEPPING[:8]))
        toolbar.addWidget(QLabel(" speed "))
        toolbar.addWidget(self.speed)
        toolbar.addActions(self.actions.of(STEPPING[8:]))
        toolbar.addSeparator()
        toolbar.addAction(self.actions.legend)
        self.toolbar = toolbar
        self.actions.legend.setChecked(True)
        self._fill_recent_menu()

    def _connect(self) -> None:
        a, c = self.actions, self.controller
        for action, slot in (
            (a.step_forward, c.step_forward),
            (a.step_backward, c.step_backward),
            (a.step_back, c.step_back),
            (a.run, c.run),
            (a.run_to_end, c.run_to_end_of_pass),
            (a.run_to_selected, self.run_to_selected),
            (a.toggle_breakpoint, self.toggle_breakpoint),
            (a.play, c.toggle_play),
            (a.reset, c.reset),
            (a.new_batch, self.new_batch),
            (a.find, self.show_search),
            (a.fit, self.canvas.fit_to_view),
            (a.zoom_in, self.canvas.zoom_in),
            (a.zoom_out, self.canvas.zoom_out),
            (a.collapse_all, self.collapse_all),
            (a.expand_all, self.expand_all),
            (a.export, self.export_picture),
            (a.train, self.training.train),
            (a.stop, self.training.stop),
            (a.reinitialize, self.reinitialize),
            (a.new, self.new_file),
            (a.open, self.choose_file),
            (a.save, self.save),
            (a.save_as, self.save_as),
            (a.reload, self.reload),
            (a.quit, self.close),
        ):
            action.triggered.connect(slot)
        a.break_nonfinite.toggled.connect(self._set_break_nonfinite)
        a.legend.toggled.connect(self.legend.setVisible)
        self.speed.valueChanged.connect(c.set_speed)
        c.advanced.connect(self._on_advanced)
        c.undone.connect(self._on_undone)
        c.wasReset.connect(self._on_reset)
        c.breakpointChanged.connect(self.scene.set_breakpoint)
        c.changed.connect(self._update_actions)
        c.stoppedAtNonfinite.connect(self._on_stopped_at_nonfinite)
        self.scene.nodeSelected.connect(self.select)
        self.inspector.follow(c)
        self.scene.groupToggled.connect(self.toggle_group)
        self.scene.breakpointToggled.connect(c.toggle_breakpoint)
        self.checker.checked.connect(self._on_checked)
        self.problems.activated.connect(self.editor.go_to)
        self.editor.lineClicked.connect(self.select_line)
        self.editor.textChanged.connect(lambda: self.document.set_dirty(True))
        self.document.dirtyChanged.connect(lambda _: self._update_title())
        self.document.changedOnDisk.connect(self._on_changed_on_disk)
        self.training.trainingStarted.connect(self._on_training_started)
        self.training.trainingFinished.connect(self._on_training_finished)
        self.training.reinitializeRequested.connect(self.reinitialize)

    # --- files -----------------------------------------------------------------------------
    def open_file(self, path) -> bool:
        """Show `path` in the editor and check it now; False (with the reason in the status
        line) when it cannot be read."""
        try:
            text = self.document.open(path)
        except (OSError, UnicodeDecodeError) as error:
            self.statusBar().showMessage(f"cannot open {path}: {error}")
            return False
        self._program = None
        self._fit_next = True
        self.checker.set_name(self.document.name)
        self.editor.setPlainText(text)
        self.document.set_dirty(False)
        self.recent.add(str(Path(path).resolve()))
        self._fill_recent_menu()
        self._update_title()
        self.check_now()
        return True

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open model", "", "Model files (*.tg)")
        if path:
            self.open_file(path)

    def new_file(self) -> None:
        self.document.new()
        self.checker.set_name(self.document.name)
        self._program = None
        self.editor.setPlainText("")
        self.document.set_dirty(False)
        self._update_title()

    def save(self) -> bool:
        if self.document.path is None:
            return self.save_as()
        return self._write(lambda: self.document.save(self.editor.source_text()))

    def save_as(self) -> bool:
        path, _ = QFileDialog.getSaveFileName(self, "Save model", "", "Model files (*.tg)")
        if not path:
            return False
        return self._write(lambda: self.document.save_as(path, self.editor.source_text()))

    def _write(self, write) -> bool:
        try:
            write()
        except OSError as error:
            self.statusBar().showMessage(f"not saved: {error}")
            return False
        self.checker.set_name(self.document.name)
        self.recent.add(str(Path(self.document.path).resolve()))
        self._fill_recent_menu()
        self._update_title()
        self.statusBar().showMessage(f"saved {self.document.path}", 3000)
        return True

    def reload(self) -> None:
        if self.document.path is not None:
            self.open_file(self.document.path)

    def _on_changed_on_disk(self, path) -> None:
        if self.document.dirty:
            self.statusBar().showMessage(
                f"{path} changed on disk; File > Reload from disk discards your edits"
            )
        else:
            self.open_file(path)

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.recent.paths():
            self.recent_menu.addAction(path).triggered.connect(
                lambda _=False, p=path: self.open_file(p)
            )

    def _update_title(self) -> None:
        name = Path(self.document.path).name if self.document.path else "untitled"
        star = "*" if self.document.dirty else ""
        self.setWindowTitle(f"{name}{star} - topograd")

    # --- checking and building -------------------------------------------------------------
    def check_now(self) -> None:
        """Check the editor's text at once (instead of after the typing pause)."""
        self.checker.check_now()

    def _on_checked(self, diagnosis: Diagnosis) -> None:
        self.editor.set_problems(diagnosis.problems)
        self.problems.show_problems(diagnosis.problems)
        if not diagnosis.ok:
            return
        if self._training:
            self._pending = diagnosis
            return
        program = parse(diagnosis.source.text, diagnosis.source.name)
        if program == self._program and self.session is not None:
            return  # only comments, spacing or positions changed
        self._program = program
        self._load(diagnosis.spec, diagnosis.source)

    def _load(self, spec, source: Source) -> None:
        try:
            session = Session(spec, source)
        except DslError as error:
            self.editor.set_problems(error.problems)
            self.problems.show_problems(error.problems)
            return
        except (ValueError, TypeError, IndexError, FloatingPointError) as error:
            self.statusBar().showMessage(f"the model could not run on a batch: {error}")
            return
        first = self.session is None or self._fit_next
        self._fit_next = False
        self.session = session
        self.presenter.set_session(session)
        self.training.set_built(session.built)
        self.training_dock.setVisible(session.can_train)
        if first:  # a network that trains shows its panel until a node is selected
            (self.training_dock if session.can_train else self.inspector_dock).raise_()
        self.collapsed = self._collapsed_for(session, first)
        self.relayout()
        self.controller.set_session(session)
        if first:
            self.show_start()
        self.statusBar().showMessage(session.subject.title, 5000)

    def _collapsed_for(self, session: Session, first: bool) -> frozenset[str]:
        """The layers to draw as one box each: on opening, a network's layers (a big graph
        file's too); on a rebuild, the ones collapsed before and the new layers a network
        opens with collapsed."""
        groups = frozenset(group.key for group in session.view.groups)
        opening = session.opening_collapsed() if COLLAPSE_ON_OPEN else frozenset()
        if COLLAPSE_ON_OPEN and not opening and len(session.view.nodes) > COLLAPSE_ABOVE:
            opening = groups
        known, self._known_groups = self._known_groups, groups
        if first:
            return opening
        return (self.collapsed & groups) | (opening - known)

    def show_start(self) -> None:
        """The whole graph when it is legible fitted to the view; else the start of the
        forward pass at a readable zoom, the graph's first boxes at the top of the view."""
        self.canvas.fit_to_view()
        if self.canvas.zoom_level() >= READABLE_ZOOM or self.session is None:
            return
        self.canvas.set_zoom(START_ZOOM)
        first_op = next((n.key for n in self.session.view.nodes if n.role == "op"), None)
        item = None if first_op is None else self.scene.item_showing(first_op)
        if item is not None:
            centre = item.sceneBoundingRect().center()
            half_height = self.canvas.viewport().height() / START_ZOOM / 2
            top = self.scene.itemsBoundingRect().top() - START_MARGIN
            self.canvas.centerOn(QPointF(centre.x(), max(centre.y(), top + half_height)))

    def relayout(self, restyle: bool = True) -> None:
        """Lay the session's graph out with the current collapsed groups and draw it. The
        scene keeps its styles by node key when it draws the same graph again (a layer
        collapsed or expanded: `restyle=False`); a new graph is restyled from the stepper."""
        if self.session is None:
            return
        layout_input = visible_input(self.session.view, self.collapsed, RANKDIR)
        self.layout_result = cached_layout(layout_input)
        self.scene.show(self.session.view, self.layout_result, self.collapsed)
        if restyle:
            self.presenter.refresh()
        self.layout_label.setText(f"layout: {self.layout_result.note}")
        if self.selected is not None:
            self.select(self.selected)

    # --- groups, selection, search ------------------------------------------------------------
    def toggle_group(self, key: str) -> None:
        self.collapsed = self.collapsed ^ {key}
        self.relayout(restyle=False)

    def collapse_all(self) -> None:
        if self.session is not None:
            self.collapsed = frozenset(group.key for group in self.session.view.groups)
            self.relayout(restyle=False)

    def expand_all(self) -> None:
        self.collapsed = frozenset()
        self.relayout(restyle=False)

    def select(self, key: str | None) -> None:
        """Show a node, or a collapsed layer, in the inspector, and mark its lines in the
        editor."""
        self.selected = key
        session = self.session
        if session is None or key is None or key not in session.view:
            self.selected = None
            self.inspector.clear()
            self.editor.link_lines(None)
            return
        self.editor.link_lines(session.source_map.lines_of(key))
        if not self._training:
            self.inspector_dock.raise_()
        if key.startswith(GROUP_PREFIX):
            self.inspector.select(key)
            return
        node = session.view.node(key)
        inputs = [
            (session.view.node(k).title, session.view.node(k).shape_text) for k in node.inputs
        ]
        self.inspector.show_node(
            node,
            session.state(key),
            session.value_view(key),
            session.grad_view(key),
            inputs,
            takes_grad=session.takes_grad(key),
        )

    def select_line(self, line: int) -> None:
        """A click on a line of the text: select the boxes of the nodes it made (their
        layer's box when it is collapsed), show the first in the inspector and bring them
        into view."""
        if self.session is None:
            return
        keys = [
            key for key in self.session.source_map.keys_on(line) if self.scene.item_showing(key)
        ]
        if not keys:
            return  # a line that made no node: the selection stays
        items = self.scene.select_keys(keys)
        area = QRectF()
        for item in items:
            area = area.united(item.box())
        self.canvas.show_area(area)
        self.select(items[0].key)

    def show_search(self) -> None:
        self.search.show()
        self.search.setFocus()

    def run_to_selected(self) -> None:
        if self.selected is not None and not self.selected.startswith(GROUP_PREFIX):
            self.controller.run_to(self.selected)

    def toggle_breakpoint(self) -> None:
        if self.selected is not None and not self.selected.startswith(GROUP_PREFIX):
            self.controller.toggle_breakpoint(self.selected)

    def new_batch(self) -> None:
        if self.session is not None and not self._training:
            self.session.new_batch()
            self.relayout()
            self.controller.set_session(self.session)

    def export_picture(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export picture", "graph.svg", "SVG (*.svg);;PNG (*.png)"
        )
        if path:
            self.export_to(path)

    def export_to(self, path) -> bool:
        """Save the graph as SVG or PNG (by the file's suffix) into a folder that exists (none
        is created); the status line says the path written, or why not."""
        target = Path(path).expanduser().absolute()
        if not target.parent.is_dir():
            self.statusBar().showMessage(
                f"not exported: the folder {target.parent} does not exist", 15000
            )
            return False
        try:
            if target.suffix.lower() == ".png":
                self.scene.export_png(target)
            else:
                self.scene.export_svg(target)
        except (OSError, ValueError) as error:
            self.statusBar().showMessage(f"not exported: {error}", 15000)
            return False
        self.statusBar().showMessage(f"exported the graph to {target}", 15000)
        return True

    # --- stepping -------------------------------------------------------------------------------
    def _on_advanced(self, events) -> None:
        self.presenter.apply(events)
        key = self.session.key_of(events[-1].node.id)
        item = self.scene.item_showing(key)
        if item is not None:
            self.keep_in_view(item)
        self._follow(key, events[-1].phase)
        self._announce_nonfinite(events)

    def keep_in_view(self, item) -> None:
        """Centre the view on the current box when it leaves the middle of the view (COMFORT
        of its width and height), so the steps are followed without the view jumping at
        every one."""
        viewport = QRectF(self.canvas.viewport().rect())
        margin_x = viewport.width() * (1 - COMFORT) / 2
        margin_y = viewport.height() * (1 - COMFORT) / 2
        comfortable = viewport.adjusted(margin_x, margin_y, -margin_x, -margin_y)
        shown = self.canvas.mapFromScene(item.box()).boundingRect()
        if not comfortable.contains(QRectF(shown).center()):
            self.canvas.centerOn(item.box().center())

    def _announce_nonfinite(self, events) -> None:
        """Name the first node of these steps whose value or gradient is not finite."""
        for event in events:
            count = self.session.nonfinite_in(event)
            if count:
                key = self.session.key_of(event.node.id)
                self.statusBar().showMessage(self._nonfinite_text(key, event, count), 15000)
                return

    def _nonfinite_text(self, key: str, event, count: int) -> str:
        node = self.session.view.node(key)
        where = f" in layer {node.layer}" if node.layer else ""
        what = "value" if event.phase == "forward" else "gradient"
        size = int(getattr(event.node, "size", 1) or 1)
        return f"non-finite {what}: {node.title}{where} has {count} NaN/Inf of {size} entries"

    def _on_stopped_at_nonfinite(self, event) -> None:
        key = self.session.key_of(event.node.id)
        count = self.session.nonfinite_in(event)
        text = self._nonfinite_text(key, event, count)
        self.statusBar().showMessage(f"stopped at the first {text.removeprefix('non-finite ')}")

    def _set_break_nonfinite(self, on: bool) -> None:
        self.controller.break_on_nonfinite = on

    def _on_undone(self, event) -> None:
        self.presenter.undo(event)
        current = self.session.stepper.current
        if current is None:
            self._follow(None, "forward")
        else:
            self._follow(self.session.key_of(current.node.id), current.phase)

    def _on_reset(self) -> None:
        if self.session is None or self.scene.graph is not self.session.view:
            return  # the new session's graph is drawn (and styled) by relayout
        self.presenter.refresh()
        self.select(self.selected)

    def _follow(self, key: str | None, phase: str) -> None:
        """The inspector follows the step just taken: its value going forward, its gradient
        going backward."""
        self.select(key if key is not None else self.selected)
        self.inspector.tabs.setCurrentIndex(0 if phase == "forward" else 1)

    def _update_actions(self) -> None:
        """Enable what can be done now (nothing steps while the model trains)."""
        stepper = self.controller.stepper
        has = stepper is not None
        idle = not self._training
        finished = has and stepper.finished
        a = self.actions
        for action in (a.run, a.run_to_end, a.run_to_selected):
            action.setEnabled(has and idle and not finished)
        a.step_forward.setEnabled(has and idle and not stepper.forward_complete)
        a.step_backward.setEnabled(has and idle and stepper.has_backward and not finished)
        a.step_back.setEnabled(has and idle and stepper.position > 0)
        a.play.setEnabled(has and idle and (not finished or self.controller.playing))
        for action in (a.reset, a.new_batch, a.toggle_breakpoint):
            action.setEnabled(has and idle)
        self.position_label.setText(self._position_text())

    def _position_text(self) -> str:
        stepper = self.controller.stepper
        if stepper is None:
            return "no graph"
        current = stepper.current
        if current is None:
            return f"ready: {stepper.forward_total} forward steps"
        if stepper.finished:
            return f"finished: {stepper.position} steps"
        if current.phase == "forward":
            return f"forward {current.index + 1}/{stepper.forward_total}"
        return f"backward {current.index + 1}"

    # --- training ------------------------------------------------------------------------------
    def _on_training_started(self) -> None:
        self._training = True
        self.controller.pause()
        self._update_actions()

    def _on_training_finished(self, _history) -> None:
        self._training = False
        if self.session is not None:
            self.session.refresh()
            self.relayout()
            self.controller.set_session(self.session)
        self._update_actions()
        if self._pending is not None:
            pending, self._pending = self._pending, None
            QTimer.singleShot(0, lambda: self._on_checked(pending))

    def reinitialize(self) -> None:
        """Draw the weights afresh as the file says (its seed), forget the curves and step
        the new weights."""
        if self.session is None or self._training or not self.session.can_train:
            return
        self._load(self.session.spec, self.session.source)  # a new Built: the file's weights
        self.statusBar().showMessage("weights reinitialized: the curves start again", 5000)

    def showEvent(self, event) -> None:
        """Share the room out and fit the graph again once the window has its real size."""
        super().showEvent(event)
        if not self._shown_once:
            self._shown_once = True
            self._share_width()
            QTimer.singleShot(0, self.show_start)

    def changeEvent(self, event) -> None:
        """Follow the system's light or dark palette."""
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange):
            self.apply_palette()
        super().changeEvent(event)

    def apply_palette(self) -> None:
        """Take the colours of the current palette: the graph, the editor, the legend and the
        plots repaint in them."""
        colours = follow_palette(self.palette())
        self.canvas.setBackgroundBrush(colours.canvas)
        self.scene.repaint_all()
        self.editor.repaint_colours()
        self.legend.update()
        self.training.apply_palette()

    def closeEvent(self, event) -> None:
        self.training.shutdown()  # stops a run and waits for its thread
        self.controller.pause()
        super().closeEvent(event)
