"""The networks to ONNX for the Triton model repository: ResNet50 from Keras (through tf2onnx),
YOLOv3 straight from the darknet cfg and weights, MTCNN from the Keras weights of the `mtcnn`
package."""
