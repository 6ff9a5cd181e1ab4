"""The peer of `catlr serve` in bench/serve_load.py: FastAPI + uvicorn (one worker) +
onnxruntime on catlr's own ONNX export, decoding with Pillow as a FastAPI user would
(plus catlr's draft-mode call for JPEGs, so both sides do the same decoding work and the
comparison is of the serving and the product).

    python bench/serve_peer.py MODEL.onnx [--port 0]

Prints "Serving MODEL at http://127.0.0.1:PORT/" once it listens, then serves POST
/predict (the image as the body, ?name=FILE) with rows like `catlr predict --json`'s.
A benchmark's peer, not part of catlr: fastapi and uvicorn are not catlr dependencies
(pip install fastapi uvicorn).
"""

import argparse
import io
import json
import socket
import sys

import numpy as np
import onnxruntime
import uvicorn
from fastapi import FastAPI, Request, Response
from PIL import Image, ImageOps


def make_app(onnx_path):
    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    size, classes = int(meta["image_size"]), json.loads(meta["classes"])
    app = FastAPI()

    def pixels(body: bytes):
        im = Image.open(io.BytesIO(body))
        if im.format == "JPEG":
            im.draft(None, (2 * size, 2 * size))
        im = ImageOps.exif_transpose(im).convert("RGB")
        return np.asarray(im.resize((size, size), Image.Resampling.BILINEAR), np.uint8)

    @app.post("/predict")
    async def predict(request: Request):
        body = await request.body()
        x = pixels(body)[None]
        p, label = session.run(None, {"image": x})
        row = {"path": request.query_params.get("name", "upload"),
               "probability": float(p[0]), "label": classes[int(label[0])]}
        return Response(json.dumps([row], indent=2) + "\n", media_type="application/json")

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    return app


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("onnx")
    ap.add_argument("--port", type=int, default=0)
    args = ap.parse_args()
    app = make_app(args.onnx)
    # IPPROTO_TCP named: asyncio sets TCP_NODELAY on accepted connections only when the
    # socket's protocol says TCP (with 0 every answer's body waits 40 ms for an ACK)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    print(f"Serving {args.onnx} at http://127.0.0.1:{sock.getsockname()[1]}/ (peer)", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                           workers=1))
    server.run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
