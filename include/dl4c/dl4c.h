/* dl4c: deep learning for C. One include for the whole public API. */
#ifndef DL4C_DL4C_H
#define DL4C_DL4C_H

#include "dl4c/core.h"
#include "dl4c/tensor.h"
#include "dl4c/optim.h"
#include "dl4c/nn.h"
#include "dl4c/config.h"
#include "dl4c/data.h"
#include "dl4c/eval.h"
#include "dl4c/dist.h"
#include "dl4c/train.h"
#include "dl4c/round.h"

#endif
