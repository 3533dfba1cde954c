"""Freezing the backbone stem (the recipe's LAYER_FIX) without freezing its BatchNorm statistics.

The recipe keeps the stem's weights as the ImageNet checkpoint has them (mnet: conv0, conv1 and the gamma/beta
of their BatchNorms), but its BatchNorm layers still run in training mode: batch statistics, and moving
statistics that follow the data (spec network.md section 11). The published mnet.25 shows it: its
``mobilenet0_batchnorm0_running_var`` holds the variance of raw 0-255 input (1.46e4 in channel 1), not the
ImageNet backbone's (5.25).

MXNet's CPU BatchNorm (oneDNN and native alike) updates the moving statistics in its *backward* pass, and cuDNN
in its forward. Putting the BatchNorm gamma/beta in ``fixed_param_names`` (grad_req 'null') prunes the stem's
backward, since nothing before it needs a gradient: on the CPU the moving statistics then never move, and a
model trained from the ImageNet backbone normalises raw pixels with ImageNet's statistics at test time (it
detected nothing). So only the convolution weights are fixed here; the BatchNorm affine parameters keep their
gradient (which makes MXNet run their backward and update the statistics) and get learning rate and weight
decay multipliers of 0, so SGD leaves them exactly as loaded: mom = 0.9 mom - 0, w += mom stays w.
"""
import json

__all__ = ['STEM_PARAMS', 'batchnorm_affine', 'freeze_plan']

STEM_PARAMS = {  # frozen with LAYER_FIX: the stem convs and their BN affine (by name, not position)
    'mnet': ['mobilenet0_conv0_weight', 'mobilenet0_batchnorm0_gamma', 'mobilenet0_batchnorm0_beta',
             'mobilenet0_conv1_weight', 'mobilenet0_batchnorm1_gamma', 'mobilenet0_batchnorm1_beta'],
    'resnet': ['conv0_weight', 'bn0_gamma', 'bn0_beta'],
}


def batchnorm_affine(sym):
    """Names of the gamma and beta inputs of every BatchNorm node of `sym`."""
    nodes = json.loads(sym.tojson())['nodes']
    return {nodes[i[0]]['name'] for n in nodes if n['op'] == 'BatchNorm' for i in n['inputs'][1:3]}


def freeze_plan(sym, names):
    """(fixed_param_names, zero_lr_names) that keep `names` unchanged by training: BatchNorm affine parameters
    go to zero_lr_names (their backward must run: it updates the moving statistics on the CPU), every other
    name to fixed_param_names (no gradient at all)."""
    affine = batchnorm_affine(sym)
    return [n for n in names if n not in affine], [n for n in names if n in affine]
