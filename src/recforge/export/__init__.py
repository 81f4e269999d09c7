"""Deployment formats of fitted models: ONNX scoring graphs (`onnx`) and compressed artifacts
(`compress`). The ONNX half needs the ``export`` extra (``pip install 'recforge[export]'``)."""
