#!/bin/bash
# fresh copies of fc22's feature-repo data (registry + online store) and raw data into project dir $1
set -e
d=$1
rm -rf $d/features/repo/data $d/data/raw
mkdir -p $d/features/repo $d/data
cp -a /tmp/fc22/features/repo/data $d/features/repo/data
cp -a /tmp/fc22/data/raw $d/data/raw
