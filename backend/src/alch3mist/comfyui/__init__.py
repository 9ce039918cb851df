"""ComfyUI: our four workflows as ComfyUI graphs, and a ComfyUI server as the image backend of stages 1–2.

nodes      the schemas of the ComfyUI core nodes we use (inputs, widget order, outputs), read from upstream
workflows  the four workflows built from those schemas, in ComfyUI's UI format and API format
export     ``alch3mist comfyui export``: write them under ``comfyui/`` (what the repository commits)
client     a small ComfyUI HTTP + websocket client (POST /prompt → /ws → /history → /view, /upload, /interrupt)
backend    ``ComfyUIImageBackend``: base image and material edit as API-format workflows on a ComfyUI server
check      ``alch3mist comfyui check``: what the server has (nodes, model files) and which of ours are missing
"""
