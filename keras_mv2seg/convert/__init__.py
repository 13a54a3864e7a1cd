"""Weight import: strict porting core, mmseg/mmcls .pth (no PyTorch), official DeepLab TF1 checkpoints."""
