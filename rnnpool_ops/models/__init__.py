"""Model builders (random initialisation), one module per paper family."""

from .mobilenetv2 import (mobilenetv2, mobilenetv2_rnnpool, mobilenetv2_rnnpool_vww, mobilenetv2_vww,
                          rex_mobilenetv2)
from .trecx import dscnn_trecx, mobilenetv1_trecx, resnet8_trecx
from .ddi import ddi_resnet, gate_masks
