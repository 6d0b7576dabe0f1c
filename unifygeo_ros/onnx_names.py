"""File and tensor names of the exported modules (torch-free, for deployments without PyTorch)."""

ONNX_FORMAT = "unifygeo_ros/onnx/3"   # 2: the decoder outputs match_score; 3: the ground branch global_rolls
FILES = {"ground": "ground_branch.onnx", "aerial": "aerial_branch.onnx", "decoder": "decoder.onnx"}
GROUND_INPUTS = ["image", "column_mask"]
GROUND_OUTPUTS = ["global_descriptor", "ground_desc0", "ground_desc1", "ground_desc2", "ground_desc3",
                  "column_valid", "global_rolls"]
AERIAL_INPUTS = ["image"]
AERIAL_OUTPUTS = ["global_descriptor", "aerial_feat0", "aerial_feat1", "aerial_feat2", "aerial_feat3"]
DECODER_INPUTS = ["ground_desc0", "ground_desc1", "ground_desc2", "ground_desc3", "column_valid",
                  "aerial_feat0", "aerial_feat1", "aerial_feat2", "aerial_feat3", "heading_logprior"]
DECODER_OUTPUTS = ["D", "yaw_field", "m0_max", "match_score", "alignment_scores", "alignment"]
