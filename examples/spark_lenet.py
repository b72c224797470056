#!/usr/bin/env python3
"""The seed's example, "Running Deep Learning on Distributed GPUs With Spark" (DL4J's LeNet on
Spark), line for line in PySpark with dl4c. Interpreter: the PyPI python3 on PATH (pyspark,
numpy; scripts/setup installs them). Data: Fashion-MNIST (Debian's dataset-fashion-mnist, or
DL4C_MNIST_DIR for an MNIST-layout directory).

    PYTHONPATH=python DL4C_LIBRARY=build/libdl4c.so python3 examples/spark_lenet.py
    PYTHONPATH=python python3 examples/spark_lenet.py --epochs 1 --train-examples 12000 --approach barrier

On a cluster: see the README's "Spark" section (spark-submit --py-files / --files libdl4c.so).
"""
import argparse
import logging

from pyspark import SparkConf, SparkContext

from dl4c import Network
from dl4c.data import MnistDataSetIterator, shuffle
from dl4c.spark import ParameterAveragingMaster, SparkNetwork

log = logging.getLogger("spark_lenet")


def main(args):
    # Create spark context, and load data into memory
    sparkConf = SparkConf()
    sparkConf.setMaster(args.master)
    sparkConf.setAppName("MNIST")
    sc = SparkContext(conf=sparkConf)

    examplesPerDataSetObject = 32
    mnistTrain = MnistDataSetIterator(32, True, 12345, num_examples=args.train_examples)
    mnistTest = MnistDataSetIterator(32, False, 12345, num_examples=args.test_examples)
    trainData = []
    testData = []
    while mnistTrain.hasNext(): trainData.append(mnistTrain.next())
    shuffle(trainData, 12345)
    while mnistTest.hasNext(): testData.append(mnistTest.next())

    # Get training data. Note that using parallelize isn't recommended for real problems
    # (dl4c.data.idx_rdd / csv_rdd read files with sc.binaryFiles / sc.textFile instead)
    train = sc.parallelize(trainData)
    test = sc.parallelize(testData)

    # Set up network configuration (as per standard DL4J networks)
    nChannels = 1
    outputNum = 10
    iterations = 1  # noqa: F841 (DL4J 0.x: fit each minibatch once; dl4c always does)
    seed = 123

    log.info("Build model....")
    builder = {
        "seed": seed,
        "l2": 0.0005,                                           # .regularization(true).l2(0.0005)
        "updater": {"type": "adagrad", "learning_rate": 0.1},   # .learningRate(0.1) .updater(Updater.ADAGRAD)
        # .optimizationAlgo(STOCHASTIC_GRADIENT_DESCENT): minibatch SGD with the updater, always
        "layers": [
            {"type": "convolution", "kernel": [5, 5], "stride": [1, 1], "n_out": 20,   # layer 0, nIn(nChannels)
             "weight_init": "xavier", "activation": "relu"},
            {"type": "subsampling", "pooling": "max", "kernel": [2, 2]},               # layer 1
            {"type": "convolution", "kernel": [5, 5], "stride": [2, 2], "n_out": 50,   # layer 2, nIn(20)
             "weight_init": "xavier", "activation": "relu"},
            {"type": "subsampling", "pooling": "max", "kernel": [2, 2]},               # layer 3
            {"type": "dense", "activation": "relu", "weight_init": "xavier", "n_out": 200},   # layer 4
            {"type": "output", "loss": "negativeloglikelihood", "n_out": outputNum,    # layer 5
             "weight_init": "xavier", "activation": "softmax"},
        ],
        # .backprop(true).pretrain(false): dl4c only does backprop
    }
    builder["input"] = {"channels": nChannels, "height": 28, "width": 28}   # new ConvolutionLayerSetup(builder,28,28,1)

    conf = builder
    net = Network(conf)   # MultiLayerNetwork + net.init(): weights drawn from the seed

    # Create Spark multi layer network from configuration
    tm = ParameterAveragingMaster.Builder(examplesPerDataSetObject) \
        .workerPrefetchNumBatches(0) \
        .saveUpdater(True) \
        .averagingFrequency(5) \
        .batchSizePerWorker(examplesPerDataSetObject) \
        .approach(args.approach) \
        .build()  # saveUpdater: keep things like adagrad squared gradient histories; average every 5 minibatches

    sparkNetwork = SparkNetwork(sc, net, tm)

    # Train network
    log.info("--- Starting network training ---")
    nEpochs = args.epochs
    for i in range(nEpochs):
        sparkNetwork.fit(train)
        print("----- Epoch " + str(i) + " complete -----")

        # Evaluate using Spark:
        evaluation = sparkNetwork.evaluate(test)
        print(evaluation.stats())

    print(sparkNetwork.getSparkTrainingStats().statsAsString())
    if args.output:
        sparkNetwork.save(args.output)
    sc.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--master", default="local[*]", help="Spark master (default local[*])")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--train-examples", type=int, default=None, help="first N training images only")
    p.add_argument("--test-examples", type=int, default=None, help="first N test images only")
    p.add_argument("--approach", default="parameter_averaging", choices=["parameter_averaging", "barrier"])
    p.add_argument("-o", "--output", help="write the trained model file here")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main(p.parse_args())
