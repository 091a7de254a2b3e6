"""AppTest steps several app tests take the same way."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def open_sample_and_paint(at: AppTest, sample: str, label: str = "liver") -> AppTest:
    """Open ``sample`` from the sidebar, add ``label`` and paint one brush dot with it."""
    at.sidebar.selectbox(key="sample").select(sample).run()
    at.sidebar.button(key="open_sample").click().run()
    at.selectbox(key="new_label_pick").set_value(label)
    at.button(key="add_label").click().run()
    return at.button(key="brush_apply").click().run()
