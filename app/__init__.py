"""The medseg Streamlit app (UI only: it calls the medseg library and re-implements nothing)."""
