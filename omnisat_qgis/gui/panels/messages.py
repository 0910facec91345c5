"""The dock's message area: the whole message, wrapped, with details and actions on demand.

QGIS's message bar shows about a line and a half in a narrow dock, so the fix at the end
of a refusal ("... run 'Set up the OmniSat engine'") was cut off. Here the text wraps to as
many lines as it needs, a longer technical part (the worker's log, a traceback) stays folded
under "Details", and a message can carry buttons (export a layer, set up the engine).
Every message also goes to QGIS's log panel (OmniSat tab).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from qgis.core import Qgis, QgsMessageLog
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QFrame, QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QToolButton, QVBoxLayout

# Background and border of each level, readable on light and dark themes.
COLORS = {
    Qgis.MessageLevel.Info: ("#e8f0fe", "#4a78c2"),
    Qgis.MessageLevel.Success: ("#e6f4ea", "#3b8a4f"),
    Qgis.MessageLevel.Warning: ("#fff4e0", "#c98a1b"),
    Qgis.MessageLevel.Critical: ("#fde8e8", "#c0392b"),
}
TITLES = {
    Qgis.MessageLevel.Info: "",
    Qgis.MessageLevel.Success: "Done: ",
    Qgis.MessageLevel.Warning: "Warning: ",
    Qgis.MessageLevel.Critical: "Cannot run: ",
}


@dataclass(frozen=True)
class Message:
    text: str
    level: Qgis.MessageLevel = Qgis.MessageLevel.Info
    details: str = ""
    actions: tuple[tuple[str, Callable[[], object]], ...] = field(default_factory=tuple)


class MessageArea(QFrame):
    """Shows the last message in full; ``history`` keeps every text said, newest last."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("OmniSatMessages")
        self.history: list[str] = []
        self.current: Message | None = None
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.close_button = QToolButton()
        self.close_button.setText("✕")
        self.close_button.setToolTip("Hide this message")
        self.close_button.setAutoRaise(True)
        self.close_button.clicked.connect(self.clear)
        self.details_button = QToolButton()
        self.details_button.setCheckable(True)
        self.details_button.setText("Details")
        self.details_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.details_button.setArrowType(Qt.ArrowType.RightArrow)
        self.details_button.toggled.connect(self._fold)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(160)
        self.actions_line = QHBoxLayout()
        top = QHBoxLayout()
        top.addWidget(self.text, 1)
        top.addWidget(self.close_button, 0, Qt.AlignmentFlag.AlignTop)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addLayout(top)
        layout.addLayout(self.actions_line)
        layout.addWidget(self.details_button)
        layout.addWidget(self.details)
        self.buttons: list[QPushButton] = []
        self.clear()

    def say(
        self,
        text: str,
        level: Qgis.MessageLevel = Qgis.MessageLevel.Info,
        details: str = "",
        actions: tuple[tuple[str, Callable[[], object]], ...] = (),
    ) -> Message:
        message = Message(text, level, details.strip(), tuple(actions))
        self.history.append(text)
        self.current = message
        QgsMessageLog.logMessage(text + (f"\n{message.details}" if message.details else ""), "OmniSat", level)
        background, border = COLORS.get(level, COLORS[Qgis.MessageLevel.Info])
        self.setStyleSheet(
            f"#OmniSatMessages {{ background: {background}; border: 1px solid {border}; "
            "border-radius: 3px; } #OmniSatMessages QLabel { color: #202020; }"
        )
        self.text.setText(f"<b>{TITLES.get(level, '')}</b>{_escape(text)}")
        for button in self.buttons:
            self.actions_line.removeWidget(button)
            button.deleteLater()
        self.buttons = []
        for label, slot in message.actions:
            button = QPushButton(label)
            button.clicked.connect(lambda _=False, run=slot: run())
            self.actions_line.addWidget(button)
            self.buttons.append(button)
        self.details.setPlainText(message.details)
        self.details_button.setVisible(bool(message.details))
        self.details_button.setChecked(False)
        self._fold(False)
        self.setVisible(True)
        return message

    def clear(self) -> None:
        self.current = None
        self.setVisible(False)

    def _fold(self, unfolded: bool) -> None:
        self.details_button.setArrowType(Qt.ArrowType.DownArrow if unfolded else Qt.ArrowType.RightArrow)
        self.details.setVisible(unfolded and bool(self.current and self.current.details))


def _escape(text: str) -> str:
    import html

    return html.escape(text).replace("\n", "<br>")
